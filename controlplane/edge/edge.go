// Package edge is the local-mode dev edge router: an HTTP handler that serves the same tenant
// route table the control plane renders for Traefik (see atende/traefik), so that
// http://<key>.localhost:8080 reaches the tenant's cell without running Traefik.
//
// Routing, by Host header (port stripped, lowercased): the bare domain or a loopback address gets
// the landing page; a live tenant host is reverse-proxied to its cell (WebSocket upgrades and
// streaming included) with the original Host header; a suspended tenant host gets the paused page
// (410); anything else gets the "tenant not found" page (404).
//
// The edge also serves the object store to browsers (Options.ObjectStore): presigned attachment
// URLs point at the edge, which proxies them to the S3 server with the Host header unchanged (so
// SigV4 signatures still verify) and adds X-Content-Type-Options: nosniff to every answer, which
// S3 servers cannot add to a presigned GET themselves.
package edge

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"atende/traefik"
)

// Log attribute keys.
const (
	logKeyTenantID  = "tenantId"
	logKeyKey       = "key"
	logKeyHost      = "host"
	logKeyRequestID = "requestId"
	logKeyBackend   = "backend"
	logKeyError     = "error"
	logKeyHosts     = "hosts"
	logKeyKeptKey   = "keptKey"
)

// Options configure a Router.
type Options struct {
	// Domain is the platform's base domain, e.g. "localhost"; a request for exactly this host (or
	// for a loopback IP address) gets the Landing page. Compared case-insensitively; empty means
	// "localhost".
	Domain string
	// Landing serves the platform landing page on the bare domain. Nil means a plain-text page.
	Landing http.Handler
	// NotFound serves every request for an unknown host; it sets its own status (404 for the
	// page, 200 for the static files the page loads). Nil means a JSON error body with code
	// "not_found" and status 404.
	NotFound http.Handler
	// Paused serves every request for a suspended tenant, setting its own status (410 for the
	// page). Nil means a JSON error body with code "suspended" and status 410.
	Paused http.Handler
	// Logger receives JSON logs of route swaps and proxy failures. Nil means slog.Default().
	Logger *slog.Logger
	// ObjectStore, when its Backend is set, is proxied for browsers.
	ObjectStore ObjectStore
}

// ObjectStore is the object store the edge serves to browsers at the public S3 endpoint written
// into presigned URLs. Only what browsers do with presigned URLs passes: GET, HEAD, PUT and CORS
// preflights (OPTIONS); other methods get 405 and paths with "." or ".." segments 400, without
// reaching the store. Every answer carries X-Content-Type-Options: nosniff; the store's own
// headers (Content-Disposition from a signed response-content-disposition, CORS) pass unchanged.
type ObjectStore struct {
	// Backend is the S3 server's base URL, e.g. "http://127.0.0.1:7070". Empty disables the route.
	Backend string
	// Host is the host of the public S3 endpoint (compared without port, case-insensitively),
	// e.g. "localhost" or "s3.example.com". Empty means Options.Domain.
	Host string
	// Bucket, when set, restricts the route to path-style requests for that bucket ("/<Bucket>"
	// and "/<Bucket>/..."), so the store can share the bare domain with the landing page.
	Bucket string
}

// Router is an http.Handler routing requests by Host over a route table that can be replaced at
// any time with SetRoutes. It is safe for concurrent use.
type Router struct {
	domain    string
	landing   http.Handler
	notFound  http.Handler
	paused    http.Handler
	log       *slog.Logger
	transport *http.Transport
	table     atomic.Pointer[table]

	s3Host   string                 // normalized ObjectStore.Host
	s3Bucket string                 // ObjectStore.Bucket
	s3       *httputil.ReverseProxy // nil without an object store
}

// table is one immutable snapshot of the route table, indexed by lowercased host.
type table struct {
	hosts map[string]*entry
}

// entry is one routed host: the route and, when live, its reverse proxy.
type entry struct {
	route traefik.Route
	proxy *httputil.ReverseProxy // nil unless route.State is live
}

// New returns a Router with an empty route table: until SetRoutes is called every tenant host gets
// NotFound.
func New(opts Options) *Router {
	r := &Router{
		domain:   strings.TrimSuffix(strings.ToLower(opts.Domain), "."),
		landing:  opts.Landing,
		notFound: opts.NotFound,
		paused:   opts.Paused,
		log:      opts.Logger,
	}
	if r.domain == "" {
		r.domain = "localhost"
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.landing == nil {
		r.landing = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = io.WriteString(w, "Atende\n")
		})
	}
	if r.notFound == nil {
		r.notFound = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			writeError(w, http.StatusNotFound, "not_found", "tenant not found", newRequestID())
		})
	}
	if r.paused == nil {
		r.paused = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			writeError(w, http.StatusGone, "suspended", "this tenant is suspended", newRequestID())
		})
	}
	r.transport = &http.Transport{
		Proxy:                 nil, // cells are local; never go through an environment proxy
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     false,
	}
	r.table.Store(&table{hosts: map[string]*entry{}})
	if opts.ObjectStore.Backend != "" {
		r.s3Host, r.s3Bucket = normalizeHost(opts.ObjectStore.Host), opts.ObjectStore.Bucket
		if r.s3Host == "" {
			r.s3Host = r.domain
		}
		if target, err := url.Parse(opts.ObjectStore.Backend); err != nil || (target.Scheme != "http" && target.Scheme != "https") || target.Host == "" {
			r.log.Error("edge: object store not served: bad backend URL", logKeyBackend, opts.ObjectStore.Backend)
		} else {
			r.s3 = r.newObjectStoreProxy(target)
		}
	}
	return r
}

// SetRoutes atomically replaces the route table. Requests already being served finish on the
// table they started with. Only live and suspended routes are kept; a live route whose Backend is
// not an absolute http(s) URL is dropped (its hosts get NotFound) and logged, and when two routes
// claim the same host the one with the smaller key wins and the conflict is logged. Build with
// atende/traefik first to reject such tables outright.
func (r *Router) SetRoutes(routes []traefik.Route) {
	// Sort a copy by key so host conflicts resolve the same way Build reports them.
	sorted := slices.Clone(routes)
	slices.SortStableFunc(sorted, func(a, b traefik.Route) int { return strings.Compare(a.Key, b.Key) })

	hosts := make(map[string]*entry, len(sorted))
	for _, route := range sorted {
		if route.State != traefik.StateLive && route.State != traefik.StateSuspended {
			continue
		}
		e := &entry{route: route}
		if route.State == traefik.StateLive {
			target, err := url.Parse(route.Backend)
			if err != nil || (target.Scheme != "http" && target.Scheme != "https") || target.Host == "" {
				r.log.Error("edge: dropping route with bad backend", logKeyTenantID, route.TenantID, logKeyKey, route.Key)
				continue
			}
			e.proxy = r.newProxy(route, target)
		}
		for _, h := range route.Hosts {
			h = normalizeHost(h)
			if h == "" {
				continue
			}
			if prev, ok := hosts[h]; ok {
				r.log.Warn("edge: host claimed by two routes", logKeyHost, h, logKeyKey, route.Key, logKeyKeptKey, prev.route.Key)
				continue
			}
			hosts[h] = e
		}
	}
	r.table.Store(&table{hosts: hosts})
	r.log.Debug("edge: route table replaced", logKeyHosts, len(hosts))
}

// ServeHTTP routes req by its Host header as described in the package documentation.
func (r *Router) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	host := normalizeHost(req.Host)
	if r.s3 != nil && host == r.s3Host && r.objectStorePath(req.URL.Path) {
		r.serveObjectStore(w, req)
		return
	}
	if host == r.domain || isLoopbackIP(host) {
		r.landing.ServeHTTP(w, req)
		return
	}
	e := r.table.Load().hosts[host]
	switch {
	case e == nil:
		r.notFound.ServeHTTP(w, req)
	case e.route.State == traefik.StateSuspended:
		r.paused.ServeHTTP(w, req)
	default:
		e.proxy.ServeHTTP(w, req)
	}
}

// newProxy returns a reverse proxy to target that keeps the client's Host header and replaces
// every client-sent forwarding header: the edge is the first trusted hop.
func (r *Router) newProxy(route traefik.Route, target *url.URL) *httputil.ReverseProxy {
	target = &url.URL{Scheme: target.Scheme, Host: target.Host}
	log := r.log.With(logKeyTenantID, route.TenantID, logKeyKey, route.Key)
	return &httputil.ReverseProxy{
		// Rewrite (unlike Director) starts from an outbound request with X-Forwarded-For, -Host
		// and -Proto already removed, so SetXForwarded sets them fresh from this connection.
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
			pr.Out.Header.Del("Forwarded")
			pr.Out.Header.Del("X-Real-Ip")
			pr.SetXForwarded()
			if ip, _, err := net.SplitHostPort(pr.In.RemoteAddr); err == nil {
				pr.Out.Header.Set("X-Real-Ip", ip)
			}
		},
		Transport:     r.transport,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, req *http.Request, err error) {
			requestID := newRequestID()
			if req.Context().Err() != nil {
				// The client went away; nobody is listening for an answer.
				log.Debug("edge: client canceled proxied request", logKeyRequestID, requestID, logKeyError, err.Error())
			} else {
				log.Error("edge: cell unavailable", logKeyRequestID, requestID, logKeyBackend, target.Host, logKeyError, err.Error())
			}
			writeError(w, http.StatusBadGateway, "internal", "cell unavailable", requestID)
		},
	}
}

// objectStorePath reports whether path is served by the object store: any path without a bucket
// restriction, else the bucket and what lies under it.
func (r *Router) objectStorePath(path string) bool {
	if r.s3Bucket == "" {
		return true
	}
	rest, ok := strings.CutPrefix(path, "/"+r.s3Bucket)
	return ok && (rest == "" || rest[0] == '/')
}

// serveObjectStore proxies req to the object store if its method and path are allowed.
func (r *Router) serveObjectStore(w http.ResponseWriter, req *http.Request) {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodOptions:
	default:
		w.Header().Set("Allow", "GET, HEAD, PUT, OPTIONS")
		writeError(w, http.StatusMethodNotAllowed, "invalid", "method not allowed on the object store", newRequestID())
		return
	}
	for _, seg := range strings.Split(req.URL.Path, "/") {
		if seg == "." || seg == ".." {
			writeError(w, http.StatusBadRequest, "invalid", "dot segments are not allowed in object paths", newRequestID())
			return
		}
	}
	r.s3.ServeHTTP(w, req)
}

// newObjectStoreProxy returns a reverse proxy to the object store at target that keeps the
// client's Host header (SigV4 signs it) and adds X-Content-Type-Options: nosniff to every answer.
func (r *Router) newObjectStoreProxy(target *url.URL) *httputil.ReverseProxy {
	target = &url.URL{Scheme: target.Scheme, Host: target.Host}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
			pr.Out.Header.Del("Forwarded")
			pr.Out.Header.Del("X-Real-Ip")
		},
		Transport: r.transport,
		ModifyResponse: func(resp *http.Response) error {
			resp.Header.Set("X-Content-Type-Options", "nosniff")
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, req *http.Request, err error) {
			requestID := newRequestID()
			if req.Context().Err() == nil {
				r.log.Error("edge: object store unavailable", logKeyRequestID, requestID, logKeyBackend, target.Host, logKeyError, err.Error())
			}
			writeError(w, http.StatusBadGateway, "internal", "object store unavailable", requestID)
		},
	}
}

// errorBody is the error shape shared by every Atende HTTP surface.
type errorBody struct {
	Error errorDetail `json:"error"`
}

// errorDetail is the inner object of errorBody.
type errorDetail struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	RequestID string `json:"requestId"`
}

// writeError writes the standard JSON error body with the given status.
func writeError(w http.ResponseWriter, status int, code, message, requestID string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Request-Id", requestID)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(errorBody{Error: errorDetail{Code: code, Message: message, RequestID: requestID}})
}

// newRequestID returns 16 random hex characters.
func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// normalizeHost strips the port, IPv6 brackets and a trailing dot from a Host header value and
// lowercases it.
func normalizeHost(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

// isLoopbackIP reports whether host is a literal loopback address such as 127.0.0.1 or ::1.
func isLoopbackIP(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
