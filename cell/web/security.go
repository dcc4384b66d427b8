package web

import (
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"time"

	"atende/cell"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/helmet"
	"github.com/gofiber/fiber/v2/middleware/limiter"
	"golang.org/x/time/rate"
)

// TrustedProxies are the peers whose X-Forwarded-For every cell believes: the edge router and
// Traefik reach cells over loopback, and both replace any X-Forwarded-For a client sent. A
// deployment adds the addresses Traefik reaches cells from (cell.Config.TrustedProxies, e.g. the
// compose network's subnet). A request from anywhere else is limited by its socket address.
var TrustedProxies = []string{"127.0.0.1", "::1"}

// RateLimit is a budget of requests per minute for one kind of request, counted per client IP
// (and, when PerAccount is set, per client IP and account named in the body).
type RateLimit struct {
	Name       string
	PerMinute  int
	PerAccount bool
}

// Rate limits (per cell process). Logins are throttled per IP and email, and more loosely per
// IP, as OWASP's Authentication Cheat Sheet advises against guessing; the others bound what one
// client address can create or send while leaving room for offices behind one NAT address.
var (
	LimitLoginAccount   = RateLimit{Name: "login", PerMinute: 10, PerAccount: true}
	LimitLoginIP        = RateLimit{Name: "login-ip", PerMinute: 120}
	LimitVisitorSession = RateLimit{Name: "visitor-session", PerMinute: 60}
	LimitChatCreate     = RateLimit{Name: "chat-create", PerMinute: 60}
	LimitUpload         = RateLimit{Name: "upload", PerMinute: 60}
	LimitMessage        = RateLimit{Name: "message", PerMinute: 600}
)

// accountOf returns the lower-cased "email" of a JSON body, or "".
func accountOf(c *fiber.Ctx) string {
	var b struct {
		Email string `json:"email"`
	}
	_ = json.Unmarshal(c.Body(), &b)
	return strings.ToLower(strings.TrimSpace(b.Email))
}

// rateLimit returns middleware spending one unit of l per request from the client's IP, and
// answering 429 rate_limited (with Retry-After) once the minute's budget is spent.
func rateLimit(l RateLimit) fiber.Handler {
	return limiter.New(limiter.Config{
		Max:        l.PerMinute,
		Expiration: time.Minute,
		KeyGenerator: func(c *fiber.Ctx) string {
			if l.PerAccount {
				return l.Name + "|" + c.IP() + "|" + accountOf(c)
			}
			return l.Name + "|" + c.IP()
		},
		LimitReached: func(c *fiber.Ctx) error {
			c.Set(fiber.HeaderRetryAfter, strconv.Itoa(60))
			return cell.Errorf(cell.ERateLimited, "too many %s requests; try again in a minute", l.Name)
		},
	})
}

// securityHeaders sets the response headers of fiber's helmet middleware, adjusted so that the
// widget script may be loaded by the tenant's own website (Cross-Origin-Resource-Policy
// cross-origin) and pages may show attachment thumbnails from the S3 endpoint (no COEP).
func securityHeaders() fiber.Handler {
	return helmet.New(helmet.Config{
		XFrameOptions:             "DENY",
		ReferrerPolicy:            "strict-origin-when-cross-origin",
		CrossOriginEmbedderPolicy: "unsafe-none",
		CrossOriginOpenerPolicy:   "same-origin",
		CrossOriginResourcePolicy: "cross-origin",
		PermissionPolicy:          "camera=(), microphone=(), geolocation=()",
	})
}

// pageCSP returns the Content-Security-Policy of the console, admin and widget-demo pages: scripts
// only from the tenant host, network only to the tenant host (HTTP and WebSocket) and the S3
// endpoint (uploads, thumbnails), and no framing by other sites (frameAncestors, e.g. "'none'").
func pageCSP(s3PublicEndpoint, frameAncestors string) string {
	s3 := ""
	if u, err := url.Parse(s3PublicEndpoint); err == nil && u.Host != "" {
		s3 = " " + u.Scheme + "://" + u.Host
	}
	return strings.Join([]string{
		"default-src 'self'",
		"script-src 'self'",
		"style-src 'self' 'unsafe-inline'",
		"img-src 'self' data: blob:" + s3,
		"connect-src 'self'" + s3,
		"object-src 'none'",
		"base-uri 'none'",
		"form-action 'self'",
		"frame-ancestors " + frameAncestors,
	}, "; ")
}

// tenantBudgets builds the tenant-wide limiters of r: a token bucket per budget refilling at
// PerMinute/60 per second with a burst of 10 seconds' worth (at least 1). Zero budgets are absent
// (unlimited).
func tenantBudgets(r cell.TenantRates) map[string]*rate.Limiter {
	out := map[string]*rate.Limiter{}
	for name, perMinute := range map[string]int{"logins": r.Logins, "visitor-sessions": r.VisitorSessions,
		"chat-creates": r.ChatCreates, "uploads": r.Uploads, "messages": r.Messages} {
		if perMinute > 0 {
			out[name] = rate.NewLimiter(rate.Limit(float64(perMinute)/60), max(1, perMinute/6))
		}
	}
	return out
}

// budget returns middleware spending one unit of the tenant-wide budget name (see
// cell.TenantRates) per request, answering 429 rate_limited once it is spent, whichever client
// addresses the requests come from.
func (s *Server) budget(name string) fiber.Handler {
	l := s.budgets[name]
	return func(c *fiber.Ctx) error {
		if l != nil && !l.Allow() {
			c.Set(fiber.HeaderRetryAfter, "10")
			return cell.Errorf(cell.ERateLimited, "the tenant's plan allows no more %s right now; try again shortly", name)
		}
		return c.Next()
	}
}

// allowBudget spends one unit of the tenant-wide budget name outside HTTP (WebSocket frames).
func (s *Server) allowBudget(name string) bool {
	l := s.budgets[name]
	return l == nil || l.Allow()
}
