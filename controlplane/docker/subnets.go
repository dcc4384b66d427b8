package docker

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"net"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/network"
)

// DefaultSubnetPool is the address range tenant networks take their subnets from when
// Options.SubnetPool is empty: 10.224.0.0/12, 65,536 subnets of TenantSubnetBits.
//
// The engine's own default pools (Docker 20.10: 172.17–31.0.0/16 and 192.168.0.0/16 in /20s)
// hold about 30 networks, and a network per tenant exhausted them at the 31st tenant on this
// machine ("could not find an available, non-overlapping IPv4 address pool"), so the driver
// chooses each tenant network's subnet itself.
const DefaultSubnetPool = "10.224.0.0/12"

// TenantSubnetBits is the prefix length of a tenant network: a /28 has 13 addresses for
// containers (the cell, a dedicated database server, Traefik and the control plane need four).
const TenantSubnetBits = 28

// subnetAttempts bounds the subnets createTenantNetwork tries before giving up.
const subnetAttempts = 64

// createTenantNetwork creates the bridge network name with labels on a /TenantSubnetBits subnet of
// the pool (Options.SubnetPool): first the one a hash of name points at, then the following ones
// while the engine answers that the subnet overlaps an existing network. A network of that name
// created meanwhile (conflict) is success.
func (d *Driver) createTenantNetwork(ctx context.Context, name string, labels map[string]string) error {
	pool := d.opts.SubnetPool
	if pool == "" {
		pool = DefaultSubnetPool
	}
	_, ipnet, err := net.ParseCIDR(pool)
	ones, bits := 0, 0
	if err == nil {
		ones, bits = ipnet.Mask.Size()
	}
	if err != nil || ipnet.IP.To4() == nil || bits != 32 || ones > TenantSubnetBits {
		return fmt.Errorf("docker: subnet pool %q must be an IPv4 CIDR range of at least one /%d", pool, TenantSubnetBits)
	}
	count := uint32(1) << (TenantSubnetBits - ones)
	h := fnv.New32a()
	h.Write([]byte(name))
	first := h.Sum32() % count
	base := binary.BigEndian.Uint32(ipnet.IP.To4())
	var last error
	for i := uint32(0); i < min(subnetAttempts, count); i++ {
		ip := make(net.IP, 4)
		binary.BigEndian.PutUint32(ip, base+((first+i)%count)<<(32-TenantSubnetBits))
		subnet := fmt.Sprintf("%s/%d", ip, TenantSubnetBits)
		_, err := d.cli.NetworkCreate(ctx, name, network.CreateOptions{Driver: "bridge", Labels: labels,
			IPAM: &network.IPAM{Config: []network.IPAMConfig{{Subnet: subnet}}}})
		if err == nil || cerrdefs.IsConflict(err) {
			return nil
		}
		if !strings.Contains(err.Error(), "overlap") {
			return fmt.Errorf("docker: create network %s on %s: %w", name, subnet, err)
		}
		last = err
	}
	return fmt.Errorf("docker: create network %s: no free /%d in %s after %d attempts: %w", name, TenantSubnetBits, pool, subnetAttempts, last)
}
