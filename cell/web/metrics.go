package web

import (
	"net/http"
	"strings"

	"atende/cell"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the cell's Prometheus series, in a registry of its own (no package globals).
type metrics struct {
	registry       *prometheus.Registry
	denied         *prometheus.CounterVec
	rateLimited    *prometheus.CounterVec
	tenantMismatch prometheus.Counter
	sockets        prometheus.Gauge
	// compatAccepted counts what compat tenancy accepted without the tenant context, by check.
	compatAccepted *prometheus.CounterVec
}

func newMetrics(foreignReads func() int64) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "atende_cell_requests_denied_total",
			Help: "Requests refused by the cell's checks, by reason (misdirected host, unauthorized, forbidden).",
		}, []string{"reason"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "atende_cell_rate_limited_total",
			Help: "Requests and WebSocket frames refused by a rate limit, by limit.",
		}, []string{"limit"}),
		tenantMismatch: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "atende_cell_token_tenant_mismatch_total",
			Help: "Validly signed tokens whose tenantId claim is another tenant's.",
		}),
		sockets: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "atende_cell_websockets",
			Help: "Open WebSocket connections.",
		}),
		compatAccepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "atende_cell_compat_accepted_total",
			Help: "Requests and tokens accepted without the tenant context in compat tenancy, by check (host: a Host that is not the tenant's; token: a token without tenantId; origin: a socket from that Host's own page). Zero for a while means strict mode is safe.",
		}, []string{"check"}),
	}
	m.registry.MustRegister(m.denied, m.rateLimited, m.tenantMismatch, m.sockets, m.compatAccepted,
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "atende_cell_store_foreign_reads_total",
			Help: "Point reads that found a document of another tenant and refused it (expected 0).",
		}, func() float64 { return float64(foreignReads()) }),
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// observeError counts a refused request by its error code.
func (m *metrics) observeError(code, msg string) {
	switch code {
	case cell.EMisdirected, cell.EUnauthorized, cell.EForbidden:
		m.denied.WithLabelValues(code).Inc()
		if code == cell.EForbidden && strings.Contains(msg, "another tenant") {
			m.tenantMismatch.Inc()
		}
	}
}

// handler serves the registry in the Prometheus text format. It answers only requests that do
// not name a tenant host: scrapers reach cells directly, while the edge and Traefik always
// forward the tenant's Host, so the metrics are never served to the public.
func (m *metrics) handler(hosts map[string]bool) fiber.Handler {
	h := adaptor.HTTPHandler(promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))
	return func(c *fiber.Ctx) error {
		host := strings.ToLower(c.Hostname())
		if i := strings.LastIndexByte(host, ':'); i > 0 && !strings.Contains(host[i:], "]") {
			host = host[:i]
		}
		if hosts[host] {
			return fiber.NewError(http.StatusNotFound, "Cannot GET /metrics")
		}
		return h(c)
	}
}
