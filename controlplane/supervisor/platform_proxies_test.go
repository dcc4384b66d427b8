package supervisor_test

import (
	"slices"
	"testing"

	"atende/controlplane"
	"atende/controlplane/supervisor"
)

// TestCellConfigCarriesTheTrustedProxies: every cell gets the platform's trusted proxies (the
// compose network Traefik reaches cells from), and none when the platform has none.
func TestCellConfigCarriesTheTrustedProxies(t *testing.T) {
	tn := &controlplane.Tenant{ID: "t1", Key: "acme", Plan: controlplane.PlanFree, Limits: controlplane.Plans[controlplane.PlanFree]}
	for _, proxies := range [][]string{nil, {"172.30.57.0/24"}, {"10.0.0.7", "fd00::/64"}} {
		cfg := supervisor.Platform{Domain: "localhost", TrustedProxies: proxies}.CellConfig(tn)
		if !slices.Equal(cfg.TrustedProxies, proxies) {
			t.Errorf("platform %q: the cell trusts %q", proxies, cfg.TrustedProxies)
		}
	}
}
