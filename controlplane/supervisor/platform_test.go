package supervisor_test

import (
	"testing"

	"atende/controlplane"
	"atende/controlplane/supervisor"
)

// TestCellConfigCarriesThePlan: a cell gets its plan's open-chat cap and tenant-wide budgets; an
// unknown plan gets the free plan's budgets, enterprise none.
func TestCellConfigCarriesThePlan(t *testing.T) {
	p := supervisor.Platform{Domain: "localhost"}
	for _, plan := range []string{controlplane.PlanFree, controlplane.PlanPro, controlplane.PlanEnterprise} {
		tn := &controlplane.Tenant{ID: "t1", Key: "acme", Plan: plan, Limits: controlplane.Plans[plan]}
		cfg := p.CellConfig(tn)
		if cfg.MaxOpenChats != controlplane.Plans[plan].MaxConcurrentChats || cfg.TenantRates != controlplane.PlanRates[plan] {
			t.Errorf("plan %s: cell gets %d open chats and %+v", plan, cfg.MaxOpenChats, cfg.TenantRates)
		}
	}
	if controlplane.RatesOf("gold") != controlplane.PlanRates[controlplane.PlanFree] {
		t.Error("an unknown plan must get the free plan's budgets")
	}
	if r := controlplane.PlanRates[controlplane.PlanFree]; r.Messages == 0 || r.ChatCreates == 0 {
		t.Errorf("the free plan must be budgeted: %+v", r)
	}
}
