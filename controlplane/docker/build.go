package docker

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/client"
)

// BuildContext is the build context of an image: Files maps a path inside the context (e.g.
// "bin/cell") to the file on this host whose content and mode it gets; a path ending in "/" is an
// empty directory (its host path is ignored). Dockerfile is the Dockerfile's path inside the
// context and must be one of Files.
type BuildContext struct {
	Dockerfile string
	Files      map[string]string
}

// BuildImage builds an image tagged tag from bctx through the engine API, the equivalent of
// `tar -c <files> | docker build -f <Dockerfile> -t <tag> -` in `make images`: the context holds
// exactly bctx.Files, streamed as a tar, and base images are never pulled (the Dockerfiles start
// FROM scratch). labels are added to the image. It returns the image id, or the builder's error
// message when a step fails.
func BuildImage(ctx context.Context, cli *client.Client, bctx BuildContext, tag string, labels map[string]string) (string, error) {
	if _, ok := bctx.Files[bctx.Dockerfile]; !ok {
		return "", fmt.Errorf("docker: build %s: the Dockerfile %q is not in the context", tag, bctx.Dockerfile)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeContext(pw, bctx.Files)) }()
	resp, err := cli.ImageBuild(ctx, pr, build.ImageBuildOptions{
		Tags: []string{tag}, Dockerfile: bctx.Dockerfile, Labels: labels,
		Remove: true, ForceRemove: true, PullParent: false, Version: build.BuilderV1,
	})
	if err != nil {
		pr.CloseWithError(err)
		return "", fmt.Errorf("docker: build %s: %w", tag, err)
	}
	defer resp.Body.Close()
	// The answer is a stream of JSON messages: build output, then an error or the image id.
	dec := json.NewDecoder(resp.Body)
	var output strings.Builder
	for {
		var msg struct {
			Stream      string `json:"stream"`
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&msg); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return "", fmt.Errorf("docker: build %s: reading the engine's answer: %w", tag, err)
		}
		output.WriteString(msg.Stream)
		if msg.Error != "" {
			return "", fmt.Errorf("docker: build %s: %s\n%s", tag, msg.Error, output.String())
		}
	}
	img, err := cli.ImageInspect(ctx, tag)
	if err != nil {
		return "", fmt.Errorf("docker: build %s: %w\n%s", tag, err, output.String())
	}
	return img.ID, nil
}

// writeContext writes files (see BuildContext) to w as a tar stream, in name order.
func writeContext(w io.Writer, files map[string]string) error {
	tw := tar.NewWriter(w)
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if strings.HasSuffix(name, "/") {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755}); err != nil {
				return err
			}
			continue
		}
		if err := addFile(tw, name, files[name]); err != nil {
			return err
		}
	}
	return tw.Close()
}

// addFile adds the host file path to tw as name, with its size and permission bits.
func addFile(tw *tar.Writer, name, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("docker: build context: %s is not a regular file", path)
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: int64(fi.Mode().Perm()), Size: fi.Size(), ModTime: fi.ModTime()}); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}
