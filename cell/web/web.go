// Package web is a cell's HTTP surface (Fiber v2): the JSON API of API.md, the WebSocket endpoint,
// the console/widget/admin pages, and the middleware every request passes: request id, Host
// check (421), CORS from the tenant's allowed origins, bearer-token authentication.
package web

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"atende/cell"
	"atende/cell/service"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/cors"
	"github.com/gofiber/fiber/v2/middleware/recover"
	"github.com/gofiber/fiber/v2/middleware/requestid"
	"golang.org/x/time/rate"
)

// BodyLimit is the largest request body accepted, in bytes (files go straight to S3).
const BodyLimit = 256 << 10

// Server is the HTTP app of one cell.
type Server struct {
	app     *fiber.App
	svc     *service.Service
	cfg     cell.Config
	log     *slog.Logger
	hosts   map[string]bool
	origins []string
	// deniedAudits bounds audit writes for refused requests (deniedAuditRate per second).
	deniedAudits *rate.Limiter
	metrics      *metrics
	// budgets are the tenant-wide rate limits from the plan (cell.TenantRates), by limit name.
	budgets map[string]*rate.Limiter
	// compat is set in compat tenancy (cell.TenancyCompat, compat.go); domains are the parent
	// domains of the tenant's hosts, whose other subdomains compat mode still refuses.
	compat  bool
	domains []string
}

// deniedAuditRate is how many refused requests per second a cell writes to its audit log.
const deniedAuditRate = 20

// statusOf is the one code → HTTP status map of the cell (API.md "Errors").
var statusOf = map[string]int{
	cell.EInvalid: http.StatusBadRequest, cell.EUnauthorized: http.StatusUnauthorized,
	cell.EForbidden: http.StatusForbidden, cell.ENotFound: http.StatusNotFound,
	cell.EConflict: http.StatusConflict, cell.ERateLimited: http.StatusTooManyRequests,
	cell.EMisdirected: http.StatusMisdirectedRequest, cell.ETooLarge: http.StatusRequestEntityTooLarge,
	cell.EUnavailable: http.StatusServiceUnavailable,
	cell.EInternal:    http.StatusInternalServerError,
}

// codeOfStatus maps Fiber's own errors (unknown route, body too large, …) to codes.
var codeOfStatus = map[int]string{
	http.StatusBadRequest: cell.EInvalid, http.StatusUnauthorized: cell.EUnauthorized,
	http.StatusForbidden: cell.EForbidden, http.StatusNotFound: cell.ENotFound,
	http.StatusMethodNotAllowed: cell.ENotFound, http.StatusConflict: cell.EConflict,
	http.StatusRequestEntityTooLarge: cell.ETooLarge, http.StatusTooManyRequests: cell.ERateLimited,
	http.StatusUpgradeRequired: cell.EInvalid, http.StatusUnsupportedMediaType: cell.EInvalid,
}

// New builds the app. Origins allowed for CORS and WebSockets are the origin of cfg.PublicURL
// plus cfg.AllowedOrigins, compared exactly.
func New(cfg cell.Config, svc *service.Service, log *slog.Logger) *Server {
	s := &Server{svc: svc, cfg: cfg, log: log, hosts: map[string]bool{}, deniedAudits: rate.NewLimiter(deniedAuditRate, deniedAuditRate), budgets: tenantBudgets(cfg.TenantRates),
		metrics: newMetrics(svc.ForeignReads), compat: compatMode(cfg), domains: parentDomains(cfg.Hosts)}
	for _, h := range cfg.Hosts {
		s.hosts[strings.ToLower(h)] = true
	}
	if u, err := url.Parse(cfg.PublicURL); err == nil && u.Host != "" {
		s.origins = append(s.origins, u.Scheme+"://"+u.Host)
	}
	s.origins = append(s.origins, cfg.AllowedOrigins...)
	s.app = fiber.New(fiber.Config{
		ErrorHandler:          s.handleError,
		BodyLimit:             BodyLimit,
		DisableStartupMessage: true,
		// Immutable copies every value out of fasthttp buffers, so nothing taken from a Ctx is
		// reused under a handler that keeps it (DESIGN.md §8.4).
		Immutable:   true,
		ReadTimeout: 30 * time.Second,
		IdleTimeout: 120 * time.Second,
		// The client IP (rate limits, audit) is the first X-Forwarded-For entry, believed only
		// from TrustedProxies and the deployment's cfg.TrustedProxies (Traefik's network).
		ProxyHeader:             fiber.HeaderXForwardedFor,
		EnableTrustedProxyCheck: true,
		TrustedProxies:          append(slices.Clone(TrustedProxies), cfg.TrustedProxies...),
		EnableIPValidation:      true,
	})
	s.routes()
	return s
}

// App returns the Fiber app (for Listen and tests).
func (s *Server) App() *fiber.App { return s.app }

// Listen serves on addr until Shutdown.
func (s *Server) Listen(addr string) error { return s.app.Listen(addr) }

// Shutdown stops accepting requests and waits up to timeout for running ones.
func (s *Server) Shutdown(timeout time.Duration) error { return s.app.ShutdownWithTimeout(timeout) }

func (s *Server) routes() {
	a := s.app
	a.Use(recover.New())
	a.Use(requestid.New())
	a.Get("/healthz", func(c *fiber.Ctx) error { return c.JSON(fiber.Map{"status": "ok"}) })
	a.Get("/readyz", func(c *fiber.Ctx) error {
		if err := s.svc.Ready(c.UserContext()); err != nil {
			return cell.Errorf(cell.EInternal, "database unavailable")
		}
		return c.JSON(fiber.Map{"status": "ok"})
	})
	a.Get("/metrics", s.metrics.handler(s.hosts))
	a.Use(func(c *fiber.Ctx) error {
		c.SetUserContext(service.WithClientIP(c.UserContext(), c.IP()))
		return c.Next()
	})
	a.Use(s.checkHost)
	a.Use(securityHeaders())
	a.Use(cors.New(cors.Config{
		AllowOriginsFunc: func(origin string) bool { return slices.Contains(s.origins, origin) },
		AllowMethods:     "GET,POST,PUT,PATCH,DELETE,OPTIONS",
		AllowHeaders:     "Authorization,Content-Type,Accept",
		MaxAge:           600,
	}))
	s.pageRoutes()
	a.Get(JWKSPath, s.jwks)

	api := a.Group("/api")
	api.Post("/auth/login", rateLimit(LimitLoginIP), rateLimit(LimitLoginAccount), s.budget("logins"), s.login)
	api.Post("/auth/refresh", rateLimit(LimitLoginIP), s.refresh)
	api.Post("/visitor/session", rateLimit(LimitVisitorSession), s.budget("visitor-sessions"), s.visitorSession)
	api.Get("/settings/public", s.publicSettings)
	api.Get("/availability", s.availability)

	authed := api.Group("", s.authenticate)
	authed.Post("/auth/logout", s.logout)
	authed.Get("/auth/me", s.me)
	authed.Post("/ws-ticket", s.wsTicket)
	authed.Post("/chats", rateLimit(LimitChatCreate), s.budget("chat-creates"), s.openChat)
	authed.Get("/chats", s.listChats)
	authed.Get("/chats/:id", s.getChat)
	authed.Get("/chats/:id/messages", s.history)
	authed.Get("/chat/queue", s.queue)
	authed.Post("/chat/:id/accept", s.accept)
	authed.Post("/chat/:id/resolve", s.resolve)
	authed.Post("/messages", rateLimit(LimitMessage), s.budget("messages"), s.sendMessage)
	authed.Post("/attachments", rateLimit(LimitUpload), s.budget("uploads"), s.createAttachment)
	authed.Get("/attachments/:id", s.attachment)
	authed.Get("/agents", s.listAgents)
	authed.Post("/agents", s.createAgent)
	authed.Delete("/agents/:id", s.deleteAgent)
	authed.Patch("/agents/:id", s.updateAgent)
	authed.Post("/auth/password", rateLimit(LimitLoginIP), s.changePassword)
	authed.Get("/audit", s.auditLog)
	s.productRoutes(authed)

	a.Get("/ws", s.upgrade, s.websocket())
}

// checkHost answers 421 misdirected to a Host this cell does not serve: routing is the first
// line of defence, this is the second (DESIGN.md §4). In compat tenancy it serves (and counts) a
// Host that is not another tenant's subdomain instead (compat.go).
func (s *Server) checkHost(c *fiber.Ctx) error {
	host := strings.ToLower(string(c.Request().Host()))
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if !s.hosts[host] {
		if s.compatHost(host) {
			s.acceptCompatHost(c, host)
			return c.Next()
		}
		return cell.Errorf(cell.EMisdirected, "this server does not serve host %q", host)
	}
	return c.Next()
}

const principalKey = "atende.principal"

// authenticate requires a bearer access, visitor or (control-plane) super-admin token.
func (s *Server) authenticate(c *fiber.Ctx) error {
	h := c.Get(fiber.HeaderAuthorization)
	token, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || token == "" {
		return cell.Errorf(cell.EUnauthorized, "missing bearer token")
	}
	p, err := s.svc.Authenticate(c.UserContext(), token, "access", "visitor")
	if err != nil {
		return err
	}
	c.Locals(principalKey, p)
	return c.Next()
}

func principal(c *fiber.Ctx) cell.Principal {
	p, _ := c.Locals(principalKey).(cell.Principal)
	return p
}

// auditDenied records a refused request (a wrong Host, a foreign or invalid token, a missing
// role), at most deniedAuditRate per second per cell so a flood of bad requests cannot turn into
// a flood of writes; the rest are counted in the log only.
func (s *Server) auditDenied(c *fiber.Ctx, code, msg string) {
	if !s.deniedAudits.Allow() {
		return
	}
	actor := cell.Author{Role: "anonymous"}
	if p := principal(c); p.Subject != "" {
		actor = p.Author()
	}
	s.svc.Audit(c.UserContext(), cell.AuditEntry{Actor: actor, Action: "request.denied", Target: c.Method() + " " + c.Path(),
		Outcome: cell.OutcomeDenied, Detail: code + ": " + msg + " (host " + string(c.Request().Host()) + ")"})
}

// errorBody is the JSON error shape of API.md.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	RequestID string `json:"requestId,omitempty"`
}

// handleError is Fiber's ErrorHandler: the one place an error becomes a status and a body.
func (s *Server) handleError(c *fiber.Ctx, err error) error {
	code, msg := cell.ErrorCode(err), cell.ErrorMessage(err)
	var fe *fiber.Error
	if errors.As(err, &fe) {
		code, msg = codeOfStatus[fe.Code], fe.Message
		if code == "" {
			code = cell.EInternal
		}
	}
	status := statusOf[code]
	if status == 0 {
		status = http.StatusInternalServerError
	}
	if fe != nil && fe.Code >= 400 && fe.Code < 500 {
		status = fe.Code
	}
	rid, _ := c.Locals("requestid").(string)
	s.metrics.observeError(code, msg)
	if code == cell.EUnauthorized || code == cell.EForbidden || code == cell.EMisdirected {
		s.auditDenied(c, code, msg)
	}
	if code == cell.ERateLimited {
		s.metrics.rateLimited.WithLabelValues(c.Route().Path).Inc()
	}
	if status >= 500 {
		s.log.Error("request failed", "requestId", rid, "method", c.Method(), "path", c.Path(), "error", err)
	}
	return c.Status(status).JSON(errorBody{Error: errorDetail{Code: code, Message: msg, RequestID: rid}})
}
