package service

import (
	"context"
	"math"
	"sort"
	"time"

	"atende/cell"
)

// Stat summarises a set of durations (seconds) or scores: how many, their mean, median and 90th
// percentile. Median is the middle value (the mean of the two middle values for an even count);
// P90 is the nearest-rank percentile: the value at rank ⌈0.9·n⌉ of the sorted values (NIST
// e-Handbook §7.2.6.2, "nearest rank"). All are 0 when Count is 0.
type Stat struct {
	Count  int     `json:"count"`
	Avg    float64 `json:"avg"`
	Median float64 `json:"median"`
	P90    float64 `json:"p90"`
}

// NewStat computes the Stat of values (the slice is sorted in place).
func NewStat(values []float64) Stat {
	if len(values) == 0 {
		return Stat{}
	}
	sort.Float64s(values)
	sum := 0.0
	for _, v := range values {
		sum += v
	}
	rank := int(math.Ceil(0.9 * float64(len(values))))
	return Stat{Count: len(values), Avg: round3(sum / float64(len(values))), Median: round3(Median(values)), P90: values[rank-1]}
}

// Median returns the median of values (sorting a copy); 0 for none.
func Median(values []float64) float64 {
	if len(values) == 0 {
		return 0
	}
	v := append([]float64(nil), values...)
	sort.Float64s(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// SLACount counts chats that met (Hit) or missed (Miss) a target; chats still within the target
// and unanswered count in neither.
type SLACount struct {
	Hit  int `json:"hit"`
	Miss int `json:"miss"`
}

// ReportFigures are the figures of one group of chats (all, one department, one agent).
// Durations are seconds: FirstResponse from creation to the first agent message (FRT);
// Handling from the first accept to resolution (TMA, average handling time); Wait from
// creation to the first accept (time in queue). AbandonmentRate is abandoned ÷ chats (0–1).
type ReportFigures struct {
	Chats           int      `json:"chats"`
	Resolved        int      `json:"resolved"`
	Abandoned       int      `json:"abandoned"`
	Open            int      `json:"open"`
	AbandonmentRate float64  `json:"abandonmentRate"`
	FirstResponse   Stat     `json:"firstResponse"`
	Handling        Stat     `json:"handling"`
	Wait            Stat     `json:"wait"`
	CSAT            Stat     `json:"csat"`
	SLAFirstResp    SLACount `json:"slaFirstResponse"`
	SLAResolution   SLACount `json:"slaResolution"`
}

// Report is the tenant-admin summary of the chats created in [From, To): totals, and the same
// figures per department ("" is chats without one) and per agent (the agent assigned last).
type Report struct {
	From          time.Time                `json:"from"`
	To            time.Time                `json:"to"`
	SLA           cell.SLA                 `json:"sla"`
	Total         ReportFigures            `json:"total"`
	ByDepartment  map[string]ReportFigures `json:"byDepartment"`
	ByAgent       map[string]ReportFigures `json:"byAgent"`
	GeneratedAt   time.Time                `json:"generatedAt"`
	DepartmentIDs []string                 `json:"-"`
}

// MaxReportRange bounds a report's date range.
const MaxReportRange = 366 * 24 * time.Hour

// Report computes the summary of the chats created in [from, to) (tenant-admins). It is computed
// in Go from one tenant-scoped read, because FerretDB v1 aggregates only a subset exactly
// (DESIGN.md §5); the result is exact on both MongoDB and FerretDB.
func (s *Service) Report(ctx context.Context, p cell.Principal, from, to time.Time) (Report, error) {
	if err := requireAdmin(p); err != nil {
		return Report{}, err
	}
	if !from.Before(to) || to.Sub(from) > MaxReportRange {
		return Report{}, cell.Errorf(cell.EInvalid, "from must be before to, at most 366 days apart")
	}
	chats, err := s.store.ChatsCreatedBetween(ctx, from, to)
	if err != nil {
		return Report{}, err
	}
	sla := s.settings(ctx).SLA
	now := s.now()
	all := newAcc()
	byDept, byAgent := map[string]*acc{}, map[string]*acc{}
	for _, c := range chats {
		all.add(c, sla, now)
		if byDept[c.DepartmentID] == nil {
			byDept[c.DepartmentID] = newAcc()
		}
		byDept[c.DepartmentID].add(c, sla, now)
		if c.AgentID != "" {
			if byAgent[c.AgentID] == nil {
				byAgent[c.AgentID] = newAcc()
			}
			byAgent[c.AgentID].add(c, sla, now)
		}
	}
	r := Report{From: from, To: to, SLA: sla, Total: all.figures(), ByDepartment: map[string]ReportFigures{}, ByAgent: map[string]ReportFigures{}, GeneratedAt: now}
	for k, a := range byDept {
		r.ByDepartment[k] = a.figures()
	}
	for k, a := range byAgent {
		r.ByAgent[k] = a.figures()
	}
	return r, nil
}

// acc accumulates one group's figures.
type acc struct {
	f                      ReportFigures
	frt, handle, wait, sat []float64
}

func newAcc() *acc { return &acc{} }

func (a *acc) add(c cell.Chat, sla cell.SLA, now time.Time) {
	a.f.Chats++
	switch c.Status {
	case cell.ChatResolved:
		a.f.Resolved++
	case cell.ChatAbandoned:
		a.f.Abandoned++
	default:
		a.f.Open++
	}
	if c.FirstResponseAt != nil {
		a.frt = append(a.frt, c.FirstResponseAt.Sub(c.CreatedAt).Seconds())
	}
	if c.AcceptedAt != nil {
		a.wait = append(a.wait, c.AcceptedAt.Sub(c.CreatedAt).Seconds())
		if c.Status == cell.ChatResolved && c.ResolvedAt != nil {
			a.handle = append(a.handle, c.ResolvedAt.Sub(*c.AcceptedAt).Seconds())
		}
	}
	if c.CSAT != nil {
		a.sat = append(a.sat, float64(c.CSAT.Score))
	}
	if c.Status == cell.ChatAbandoned {
		return // the visitor left before anyone could answer: counted in abandonment, not in SLAs
	}
	if t := sla.FirstResponseSeconds; t > 0 {
		limit := c.CreatedAt.Add(time.Duration(t) * time.Second)
		switch {
		case c.FirstResponseAt != nil && !c.FirstResponseAt.After(limit):
			a.f.SLAFirstResp.Hit++
		case c.FirstResponseAt != nil || now.After(limit) || !c.Status.Open():
			a.f.SLAFirstResp.Miss++
		}
	}
	if t := sla.ResolutionSeconds; t > 0 {
		limit := c.CreatedAt.Add(time.Duration(t) * time.Second)
		switch {
		case c.Status == cell.ChatResolved && c.ResolvedAt != nil && !c.ResolvedAt.After(limit):
			a.f.SLAResolution.Hit++
		case c.Status == cell.ChatResolved || (c.Status.Open() && now.After(limit)):
			a.f.SLAResolution.Miss++
		}
	}
}

func (a *acc) figures() ReportFigures {
	f := a.f
	if f.Chats > 0 {
		f.AbandonmentRate = round3(float64(f.Abandoned) / float64(f.Chats))
	}
	f.FirstResponse, f.Handling, f.Wait, f.CSAT = NewStat(a.frt), NewStat(a.handle), NewStat(a.wait), NewStat(a.sat)
	return f
}
