package process

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"atende/controlplane"
)

var _ controlplane.ResourceLister = (*Driver)(nil)

// TenantResources implements controlplane.ResourceLister: one controlplane.ResourceProcessCell
// per tenant that has a cell directory under Options.Dir (named by a tenant id) or a cell this
// driver runs. The resource's name is the directory's path, or "pid <n>" for a running cell
// without a directory.
func (d *Driver) TenantResources(ctx context.Context) ([]controlplane.Resource, error) {
	found := map[string]string{}
	entries, err := os.ReadDir(d.opts.Dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("process: list cell directories: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() && controlplane.IsTenantID(e.Name()) {
			found[e.Name()] = filepath.Join(d.opts.Dir, e.Name())
		}
	}
	d.mu.Lock()
	for id, p := range d.cells {
		if _, ok := found[id]; !ok {
			p.mu.Lock()
			found[id] = "pid " + strconv.Itoa(p.pid)
			p.mu.Unlock()
		}
	}
	d.mu.Unlock()
	out := make([]controlplane.Resource, 0, len(found))
	for id, name := range found {
		out = append(out, controlplane.Resource{Kind: controlplane.ResourceProcessCell, Name: name, TenantID: id})
	}
	slices.SortFunc(out, func(a, b controlplane.Resource) int { return strings.Compare(a.TenantID, b.TenantID) })
	return out, nil
}

// ResourceKinds implements controlplane.ResourceLister.
func (d *Driver) ResourceKinds() []string { return []string{controlplane.ResourceProcessCell} }
