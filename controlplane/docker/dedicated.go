package docker

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"

	"atende/controlplane"
)

// The dedicated tier. A dedicated tenant's database server is a container of DatabaseImage
// (deploy/mongo.Dockerfile: FerretDB v1 with SQLite, built FROM scratch by `make images`; on a
// deployment with MongoDB images at hand, a mongo image serving on DatabasePort works the same)
// named DatabaseContainerName(<id>) = "atende-mongo-<id>", attached to the tenant's own network
// NetworkName(<id>) (the one its cell joins, so only that cell reaches it: it publishes no port),
// with its data on the volume DatabaseVolumeName(<id>) mounted on /data. Container and volume
// carry LabelManaged, LabelTenantID and LabelRole=RoleDatabase, so the sweep lists them.

// DefaultDatabaseImage is the dedicated database server image `make images` builds.
const DefaultDatabaseImage = "atende/mongo:dev"

// DatabasePort is the TCP port the database server listens on inside its container.
const DatabasePort = 27017

// LabelRole tells what a managed container or volume is for; RoleDatabase marks a dedicated
// tenant's database server and its volume. Cell containers do not carry it.
const (
	LabelRole    = "atende.role"
	RoleDatabase = "database"
)

// DatabaseContainerName returns the name of a dedicated tenant's database server container:
// "atende-mongo-<tenantId>". It is also its host name on the tenant's network.
func DatabaseContainerName(tenantID string) string { return "atende-mongo-" + tenantID }

// DatabaseVolumeName returns the name of the volume of a dedicated tenant's database data:
// "atende-mongo-<tenantId>".
func DatabaseVolumeName(tenantID string) string { return "atende-mongo-" + tenantID }

// DatabaseResources are the limits of a dedicated database server container: 512 MiB of memory
// (swap included), one CPU and 512 pids. FerretDB with SQLite idles at about 30 MiB.
var DatabaseResources = Resources{MemoryBytes: 512 << 20, NanoCPUs: 1e9, Pids: 512}

// databaseReadyTimeout bounds EnsureDatabaseServer's wait for the server's first answer.
const databaseReadyTimeout = 30 * time.Second

// EnsureTenantNetwork creates the tenant's bridge network NetworkName(tenantID) unless it exists
// and returns its name. It implements part of supervisor.DatabaseServers. Errors: invalid (bad
// tenant id), conflict (a network of that name not created for the tenant), the engine's.
func (d *Driver) EnsureTenantNetwork(ctx context.Context, tenantID string) (string, error) {
	if err := checkTenantID(tenantID); err != nil {
		return "", err
	}
	defer d.lockTenant(tenantID)()
	if err := d.ensureNetwork(ctx, tenantID); err != nil {
		return "", err
	}
	return NetworkName(tenantID), nil
}

// EnsureDatabaseServer ensures the tenant's database server: its network and volume exist, its
// container exists and runs (a stopped one is started again), and it answers a ping (the image's
// `/mongoserver -healthcheck`, run inside the container through the engine, every 100 ms for at
// most 30 s). It returns the container, the volume and the URI the tenant's cell reaches it at,
// "mongodb://atende-mongo-<id>:27017/". What already exists counts as success. Errors: invalid
// (bad tenant id), conflict (a volume or container of that name not created for the tenant),
// a missing image (never pulled: `make images`), the engine's, a server that never answers.
func (d *Driver) EnsureDatabaseServer(ctx context.Context, tenantID string) (controlplane.DatabaseServer, error) {
	srv := controlplane.DatabaseServer{
		Container: DatabaseContainerName(tenantID), Volume: DatabaseVolumeName(tenantID),
		URI: "mongodb://" + net.JoinHostPort(DatabaseContainerName(tenantID), strconv.Itoa(DatabasePort)) + "/",
	}
	if err := checkTenantID(tenantID); err != nil {
		return srv, err
	}
	defer d.lockTenant(tenantID)()
	if err := d.ensureNetwork(ctx, tenantID); err != nil {
		return srv, err
	}
	labels := d.databaseLabels(tenantID)
	vol, err := d.cli.VolumeInspect(ctx, srv.Volume)
	switch {
	case cerrdefs.IsNotFound(err):
		if _, err := d.cli.VolumeCreate(ctx, volume.CreateOptions{Name: srv.Volume, Driver: "local", Labels: labels}); err != nil {
			return srv, fmt.Errorf("docker: create volume %s: %w", srv.Volume, err)
		}
	case err != nil:
		return srv, fmt.Errorf("docker: inspect volume %s: %w", srv.Volume, err)
	case vol.Labels[LabelManaged] != "true" || vol.Labels[LabelTenantID] != tenantID:
		return srv, controlplane.Errorf(controlplane.EConflict, "volume %s exists but was not created for tenant %s", srv.Volume, tenantID)
	}
	id, err := d.ensureDatabaseContainer(ctx, tenantID, srv, labels)
	if err != nil {
		return srv, err
	}
	if err := d.waitDatabase(ctx, id); err != nil {
		return srv, err
	}
	d.log.Info("database server ready", attrTenantID, tenantID, "container", srv.Container)
	return srv, nil
}

// databaseLabels are the labels of a tenant's database container and volume.
func (d *Driver) databaseLabels(tenantID string) map[string]string {
	labels := map[string]string{}
	for k, v := range d.opts.Labels {
		labels[k] = v
	}
	labels[LabelManaged], labels[LabelTenantID], labels[LabelRole] = "true", tenantID, RoleDatabase
	return labels
}

// ensureDatabaseContainer creates and starts the database container unless it runs, and returns
// its id.
func (d *Driver) ensureDatabaseContainer(ctx context.Context, tenantID string, srv controlplane.DatabaseServer, labels map[string]string) (string, error) {
	for attempt := 0; attempt < 3; attempt++ {
		info, err := d.cli.ContainerInspect(ctx, srv.Container)
		switch {
		case err == nil:
			if info.Config == nil || info.Config.Labels[LabelManaged] != "true" || info.Config.Labels[LabelTenantID] != tenantID {
				return "", controlplane.Errorf(controlplane.EConflict, "container %s exists but was not created for tenant %s", srv.Container, tenantID)
			}
			if info.State != nil && (info.State.Running || info.State.Restarting) {
				return info.ID, nil
			}
			if err := d.cli.ContainerStart(ctx, info.ID, container.StartOptions{}); err != nil {
				return "", fmt.Errorf("docker: start %s: %w", srv.Container, err)
			}
			return info.ID, nil
		case !cerrdefs.IsNotFound(err):
			return "", fmt.Errorf("docker: inspect %s: %w", srv.Container, err)
		}
		res := DatabaseResources
		pids := res.Pids
		created, err := d.cli.ContainerCreate(ctx,
			&container.Config{
				Image: d.databaseImage(), User: d.opts.User, Labels: labels,
				Healthcheck: &container.HealthConfig{
					Test:     []string{"CMD", "/mongoserver", "-healthcheck"},
					Interval: 10 * time.Second, Timeout: 3 * time.Second, StartPeriod: 10 * time.Second, Retries: 3,
				},
			},
			&container.HostConfig{
				NetworkMode:    container.NetworkMode(NetworkName(tenantID)),
				Mounts:         []mount.Mount{{Type: mount.TypeVolume, Source: srv.Volume, Target: "/data"}},
				RestartPolicy:  container.RestartPolicy{Name: container.RestartPolicyMode(d.opts.RestartPolicy)},
				ReadonlyRootfs: true,
				Tmpfs:          map[string]string{"/tmp": "rw,noexec,nosuid,nodev,size=64m"},
				SecurityOpt:    []string{"no-new-privileges:true"},
				CapDrop:        []string{"ALL"},
				Resources: container.Resources{
					Memory: res.MemoryBytes, MemorySwap: res.MemoryBytes, NanoCPUs: res.NanoCPUs, PidsLimit: &pids,
				},
			},
			&network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{NetworkName(tenantID): {}}},
			nil, srv.Container)
		if cerrdefs.IsConflict(err) {
			continue // created concurrently: look again
		}
		if err != nil {
			if cerrdefs.IsNotFound(err) {
				return "", fmt.Errorf("docker: create %s: %w (build the image %s with `make images`; it is never pulled)", srv.Container, err, d.databaseImage())
			}
			return "", fmt.Errorf("docker: create %s: %w", srv.Container, err)
		}
		if err := d.cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
			return "", fmt.Errorf("docker: start %s: %w", srv.Container, err)
		}
		return created.ID, nil
	}
	return "", fmt.Errorf("docker: database server of %s keeps changing under the driver", tenantID)
}

// databaseImage returns Options.DatabaseImage or DefaultDatabaseImage.
func (d *Driver) databaseImage() string {
	if d.opts.DatabaseImage != "" {
		return d.opts.DatabaseImage
	}
	return DefaultDatabaseImage
}

// waitDatabase runs `/mongoserver -healthcheck` in the container id every 100 ms until it exits
// 0, for at most databaseReadyTimeout. Running the probe inside the container works wherever
// the control plane runs (on the host or in a container of its own), without joining the
// tenant's network.
func (d *Driver) waitDatabase(ctx context.Context, id string) error {
	deadline := time.Now().Add(databaseReadyTimeout)
	var last string
	for {
		ok, why := d.execProbe(ctx, id)
		if ok {
			return nil
		}
		last = why
		if time.Now().After(deadline) {
			return fmt.Errorf("docker: database server %s did not answer within %s: %s", shortID(id), databaseReadyTimeout, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// execProbe runs the health probe once in container id and reports whether it exited 0, or why
// not.
func (d *Driver) execProbe(ctx context.Context, id string) (bool, string) {
	ex, err := d.cli.ContainerExecCreate(ctx, id, container.ExecOptions{Cmd: []string{"/mongoserver", "-healthcheck"}})
	if err != nil {
		return false, err.Error()
	}
	if err := d.cli.ContainerExecStart(ctx, ex.ID, container.ExecStartOptions{Detach: true}); err != nil {
		return false, err.Error()
	}
	for i := 0; i < 100; i++ {
		st, err := d.cli.ContainerExecInspect(ctx, ex.ID)
		if err != nil {
			return false, err.Error()
		}
		if !st.Running && (st.Pid != 0 || st.ExitCode != 0 || i > 0) {
			return st.ExitCode == 0, fmt.Sprintf("probe exit code %d", st.ExitCode)
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err().Error()
		case <-time.After(25 * time.Millisecond):
		}
	}
	return false, "probe still running"
}

// RemoveDatabaseServer removes the tenant's database server container (killing it if it runs)
// and then its volume, with the data. Missing objects are success. It implements part of
// supervisor.DatabaseServers. Errors: invalid (bad tenant id), conflict (a container or volume of
// that name not created for the tenant: left alone), the engine's.
func (d *Driver) RemoveDatabaseServer(ctx context.Context, tenantID string) error {
	if err := checkTenantID(tenantID); err != nil {
		return err
	}
	defer d.lockTenant(tenantID)()
	name := DatabaseContainerName(tenantID)
	info, err := d.cli.ContainerInspect(ctx, name)
	switch {
	case cerrdefs.IsNotFound(err):
	case err != nil:
		return fmt.Errorf("docker: inspect %s: %w", name, err)
	case info.Config == nil || info.Config.Labels[LabelManaged] != "true" || info.Config.Labels[LabelTenantID] != tenantID:
		return controlplane.Errorf(controlplane.EConflict, "container %s was not created for tenant %s; left alone", name, tenantID)
	default:
		if err := d.cli.ContainerRemove(ctx, info.ID, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			if !strings.Contains(err.Error(), "already in progress") {
				return fmt.Errorf("docker: remove %s: %w", name, err)
			}
			if err := d.waitGone(ctx, info.ID); err != nil {
				return err
			}
		}
	}
	volName := DatabaseVolumeName(tenantID)
	vol, err := d.cli.VolumeInspect(ctx, volName)
	switch {
	case cerrdefs.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("docker: inspect volume %s: %w", volName, err)
	case vol.Labels[LabelManaged] != "true" || vol.Labels[LabelTenantID] != tenantID:
		return controlplane.Errorf(controlplane.EConflict, "volume %s was not created for tenant %s; left alone", volName, tenantID)
	}
	if err := d.cli.VolumeRemove(ctx, volName, false); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("docker: remove volume %s: %w", volName, err)
	}
	d.log.Info("database server removed", attrTenantID, tenantID)
	return nil
}

// tenantVolumes lists the volumes labelled LabelManaged with a LabelTenantID
// (controlplane.ResourceVolume).
func (d *Driver) tenantVolumes(ctx context.Context) ([]controlplane.Resource, error) {
	f := filters.NewArgs(filters.Arg("label", LabelManaged+"=true"))
	vs, err := d.cli.VolumeList(ctx, volume.ListOptions{Filters: f})
	if err != nil {
		return nil, fmt.Errorf("docker: list volumes: %w", err)
	}
	out := []controlplane.Resource{}
	for _, v := range vs.Volumes {
		if v == nil {
			continue
		}
		if id := v.Labels[LabelTenantID]; id != "" {
			out = append(out, controlplane.Resource{Kind: controlplane.ResourceVolume, Name: v.Name, TenantID: id})
		}
	}
	return out, nil
}
