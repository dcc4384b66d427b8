package docker_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/pkg/stdcopy"

	"atende/controlplane"
	"atende/controlplane/docker"
)

// TestNetworkAddressesCellsByName: with Options.Network a cell joins that network besides its own,
// publishes no port on the host, and its Address is "atende-cell-<id>:8080", which another
// container on the network (Traefik, in compose) reaches by that name; Remove removes the cell
// and its own network but leaves the shared one.
func TestNetworkAddressesCellsByName(t *testing.T) {
	requireEngine(t)
	ctx := context.Background()
	shared := "atende-test-shared-" + engine.run
	nw, err := engine.cli.NetworkCreate(ctx, shared, network.CreateOptions{Driver: "bridge", Labels: map[string]string{labelRun: engine.run}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = engine.cli.NetworkRemove(context.Background(), nw.ID) })

	if _, err := docker.New(ctx, docker.Options{Client: engine.cli, Image: engine.image, Network: "atende-test-missing-" + engine.run}); err == nil {
		t.Fatal("New accepted a network that does not exist")
	}
	d := newDriver(t, docker.Options{Network: shared})
	id := newTenant(t)
	c, err := d.Start(ctx, cellConfig(id))
	if err != nil {
		t.Fatal(err)
	}
	want := docker.ContainerName(id) + ":" + strconv.Itoa(docker.ContainerPort)
	if c.Address != want {
		t.Fatalf("Start: address %q, want %q", c.Address, want)
	}
	info := inspect(t, id)
	if len(info.HostConfig.PortBindings) != 0 {
		t.Errorf("port bindings %v, want none", info.HostConfig.PortBindings)
	}
	for _, n := range []string{docker.NetworkName(id), shared} {
		if _, ok := info.NetworkSettings.Networks[n]; !ok {
			t.Errorf("the cell is not on network %s (networks %v)", n, networkNames(info.NetworkSettings.Networks))
		}
	}

	// From a container on the shared network only, by name, until the cell listens.
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, out := probeOn(t, shared, want)
		if ok {
			break
		}
		if time.Now().After(deadline) {
			logs, _ := d.Logs(ctx, id, 20)
			t.Fatalf("%s unreachable from network %s: %s\ncell logs:\n%s", want, shared, out, logs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if st, err := d.Status(ctx, id); err != nil || st.State != controlplane.CellRunning || st.Address != want {
		t.Fatalf("Status: %+v, %v; want running at %s", st, err, want)
	}

	if err := d.Remove(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := engine.cli.NetworkInspect(ctx, docker.NetworkName(id), network.InspectOptions{}); !gone(err) {
		t.Errorf("the tenant's network survived Remove: %v", err)
	}
	if _, err := engine.cli.NetworkInspect(ctx, shared, network.InspectOptions{}); err != nil {
		t.Errorf("the shared network did not survive Remove: %v", err)
	}
}

// probeOn runs the probe image attached to the network named nw and reports whether it connected
// to addr, with the probe's output.
func probeOn(tb testing.TB, nw, addr string) (bool, string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := engine.cli.ContainerCreate(ctx, &container.Config{Image: engine.probe, Cmd: []string{addr}, Labels: map[string]string{labelRun: engine.run}},
		&container.HostConfig{NetworkMode: container.NetworkMode(nw)}, nil, nil, "")
	if err != nil {
		tb.Fatal(err)
	}
	defer engine.cli.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true})
	waitc, errc := engine.cli.ContainerWait(ctx, c.ID, container.WaitConditionNextExit)
	if err := engine.cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		tb.Fatal(err)
	}
	var code int64
	select {
	case res := <-waitc:
		code = res.StatusCode
	case err := <-errc:
		tb.Fatal(err)
	}
	var out strings.Builder
	if rc, err := engine.cli.ContainerLogs(ctx, c.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true}); err == nil {
		_, _ = stdcopy.StdCopy(&out, &out, rc)
		rc.Close()
	}
	return code == 0, strings.TrimSpace(out.String())
}

// networkNames returns the names of a container's networks.
func networkNames(m map[string]*network.EndpointSettings) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
