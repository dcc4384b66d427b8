// Package versity runs the versitygw S3 gateway (github.com/versity/versitygw, posix backend) in
// process. It is the local-mode (and test) S3 server: real SigV4 verification and presigned-URL
// expiry checks, objects stored as files under a directory.
//
// versitygw allows one embedded gateway per process (it keeps package-level state), so a process
// starts at most one Server. Its posix backend also changes the process's working directory to
// the objects directory (os.Chdir in posix.New): resolve every relative path before Start.
//
// Besides the root account, the gateway keeps one account per tenant (see TenantAccess), stored
// by its internal IAM service under the data directory.
package versity

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/versity/versitygw/auth"
	"github.com/versity/versitygw/backend/meta"
	"github.com/versity/versitygw/backend/posix"
	"github.com/versity/versitygw/debuglogger"
	"github.com/versity/versitygw/embedgw"
)

// Region is the S3 region the embedded gateway answers for.
const Region = "us-east-1"

// Server is a running embedded S3 gateway.
type Server struct {
	endpoint string
	// accessKey and secretKey are the root credentials.
	accessKey, secretKey string
	// iam is the gateway's account store, shared with TenantAccess.
	iam    auth.IAMService
	cancel context.CancelFunc
	done   chan error
}

// Start starts the gateway with objects under dir/objects, object metadata under dir/meta (sidecar
// files, so no extended-attribute support is needed from the file system) and accounts under
// dir/iam. addr is "host:port"; a port of 0 picks a free one. accessKey and secretKey are the root
// credentials. It returns once the gateway accepts TCP connections, or an error after 10 s.
func Start(dir, addr, accessKey, secretKey string) (*Server, error) {
	if accessKey == "" || secretKey == "" {
		return nil, errors.New("versity: root access key and secret are required")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("versity: data dir: %w", err)
	}
	objects, metaDir, iamDir := filepath.Join(abs, "objects"), filepath.Join(abs, "meta"), filepath.Join(abs, "iam")
	for _, d := range []string{objects, metaDir, iamDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("versity: data dir: %w", err)
		}
	}
	addr, err = concreteAddr(addr)
	if err != nil {
		return nil, err
	}
	sidecar, err := meta.NewSideCar(metaDir)
	if err != nil {
		return nil, fmt.Errorf("versity: metadata dir: %w", err)
	}
	be, err := posix.New(objects, sidecar, posix.PosixOpts{NewDirPerm: 0o700, NewFilePerm: 0o600})
	if err != nil {
		return nil, fmt.Errorf("versity: posix backend: %w", err)
	}
	cfg := &embedgw.Config{
		RootUserAccess:    accessKey,
		RootUserSecret:    secretKey,
		Region:            Region,
		Ports:             []string{addr},
		MaxConnections:    10000,
		MaxRequests:       10000,
		MultipartMaxParts: 10000,
		IAMDir:            iamDir,
		// Without the cache every request reads the accounts file, so a revoked account is
		// refused at once. The cache would also spin: with the zero TTL and prune interval its
		// pruning goroutine loops without sleeping (measured: 2.1 s of CPU per 3 s while idle).
		IAMCacheDisable: true,
		Quiet:           true,
		LogLevel:        debuglogger.LevelSilent,
		HealthPath:      "/healthz",
	}
	// The IAM service is built here, as the gateway would build it (IamOpts), so that
	// TenantAccess manages the very accounts the gateway authenticates against.
	iam, err := auth.New(cfg.IamOpts())
	if err != nil {
		return nil, fmt.Errorf("versity: IAM service: %w", err)
	}
	cfg.IAMService = iam
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{endpoint: "http://" + addr, accessKey: accessKey, secretKey: secretKey, iam: iam, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- embedgw.RunVersityGW(ctx, be, cfg) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-s.done:
			cancel()
			_ = iam.Shutdown()
			return nil, fmt.Errorf("versity: gateway stopped at start: %w", err)
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return s, nil
		}
		if time.Now().After(deadline) {
			s.Close()
			return nil, fmt.Errorf("versity: %s not reachable within 10s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Endpoint returns the gateway's base URL, e.g. "http://127.0.0.1:8333".
func (s *Server) Endpoint() string { return s.endpoint }

// Close stops the gateway and waits (at most 10 s) for it to finish.
func (s *Server) Close() {
	s.cancel()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
	}
	_ = s.iam.Shutdown()
}

// concreteAddr replaces a port of 0 in addr with a currently free port on the same host.
func concreteAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("versity: listen address %q: %w", addr, err)
	}
	if port != "0" {
		return addr, nil
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", fmt.Errorf("versity: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}
