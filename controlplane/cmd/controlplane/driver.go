package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"

	"atende/controlplane"
	"atende/controlplane/docker"
)

// Cell drivers selectable with ATENDE_DRIVER / -driver.
const (
	driverProcess = "process"
	driverDocker  = "docker"
)

// cellDriver is a cell driver that stops the cells it runs when the control plane exits.
type cellDriver interface {
	controlplane.Driver
	StopAll(ctx context.Context)
}

// openDockerDriver connects to the local Docker engine with the cell image cfg.CellImage. When
// MongoDB or S3 are embedded and would listen on a loopback address, it moves them to the same
// port on the gateway of the engine's default bridge (e.g. 172.17.0.1): cells in containers
// reach that address (and it is not exposed beyond this host), while the loopback inside a
// container is the container's own. It returns the driver and the function that closes it.
//
// With embedded services the cells stop with the control plane, as with the process driver (their
// database and object store are gone). With external services they keep running in their
// containers when the control plane exits, and the next control plane adopts them.
func openDockerDriver(ctx context.Context, cfg *config, log *slog.Logger) (cellDriver, func(), error) {
	d, err := docker.New(ctx, docker.Options{Image: cfg.CellImage, DatabaseImage: cfg.MongoImage, Network: cfg.DockerNetwork, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	gateway, err := d.HostGateway(ctx)
	if err != nil {
		d.Close()
		return nil, nil, err
	}
	for _, svc := range []struct {
		embedded bool
		addr     *string
		name     string
	}{{cfg.MongoURI == "", &cfg.MongoAddr, envMongoAddr}, {cfg.S3Endpoint == "", &cfg.S3Addr, envS3Addr}} {
		if !svc.embedded {
			continue
		}
		if host, port, err := net.SplitHostPort(*svc.addr); err == nil && isLoopback(host) {
			*svc.addr = net.JoinHostPort(gateway, port)
			log.Info("embedded service moved to the Docker bridge gateway so cells can reach it", "setting", svc.name, "addr", *svc.addr)
		}
	}
	for name, raw := range map[string]string{envMongoURI: cfg.MongoURI, envS3Endpoint: cfg.S3Endpoint} {
		if u, err := url.Parse(raw); raw != "" && err == nil && isLoopback(u.Hostname()) {
			log.Warn("a loopback address is unreachable from cells in containers", "setting", name)
		}
	}
	closeFn := func() { _ = d.Close() }
	if cfg.MongoURI == "" || cfg.S3Endpoint == "" {
		return d, closeFn, nil
	}
	return detachedCells{Driver: d, log: log}, closeFn, nil
}

// isLoopback reports whether host is "localhost" or a loopback IP address.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// detachedCells is the docker driver whose cells outlive the control plane: StopAll leaves them
// running.
type detachedCells struct {
	*docker.Driver
	log *slog.Logger
}

// StopAll leaves the cells running in their containers and says so.
func (d detachedCells) StopAll(context.Context) {
	d.log.Info(fmt.Sprintf("cells keep running in their containers (%s*); the next control plane adopts them", docker.ContainerName("")))
}
