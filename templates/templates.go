// Package templates holds Atende's web front end: the server-rendered HTML pages (html/template,
// embedded with embed.FS) and the static JavaScript and CSS they load (agent console, tenant-admin
// page, visitor widget). It is pure presentation: it knows nothing about tenants beyond the Data a
// caller hands it, and every value in Data is escaped by html/template.
//
// Pages (see Names): "landing.html" (platform landing page on the bare host), "notfound.html"
// (unknown tenant, served with 404), "paused.html" (suspended tenant, served with 410),
// "console.html" (agent console, /console), "admin.html" (tenant-admin page, /admin) and
// "widget-demo.html" (a fake tenant web site that embeds the widget, /widget-demo).
//
// Static files (see Static): "widget.js" (served at /widget.js), and "app.css", "auth.js",
// "console.js", "admin.js" (served under /static/). The pages reference them as /static/<name> and
// /widget.js, so a server must mount Static() at both places.
package templates

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

//go:embed html/*.html
var pageFiles embed.FS

//go:embed static
var staticFiles embed.FS

// layoutFile is the shared page skeleton; every page defines the "title", "body-class" and
// "content" blocks it fills (and optionally "scripts").
const layoutFile = "html/layout.html"

// Data is what a page is rendered with. Every field is optional; a page shows what it has.
type Data struct {
	// Title is the document title; empty means a per-page default.
	Title string
	// TenantID is the tenant's immutable id, TenantKey its subdomain slug and TenantName its
	// display name (e.g. "Acme").
	TenantID, TenantKey, TenantName string
	// PublicURL is the tenant's base URL as browsers see it, e.g. "http://acme.localhost:8080".
	// The admin page uses it to print the widget embed snippet.
	PublicURL string
	// Domain is the platform's base domain, e.g. "localhost"; tenants live at <key>.<Domain>.
	Domain string
	// EdgeURL is the platform's base URL on the bare host, e.g. "http://localhost:8080". The
	// landing page derives tenant URLs from it (see TenantURL).
	EdgeURL string
	// Host is the host name the request asked for, e.g. "nope.localhost:8080"; the not-found and
	// paused pages show it.
	Host string
	// Status is the HTTP status the page is served with (shown on error pages), e.g. 404.
	Status int
	// Message is an optional extra sentence shown on the not-found and paused pages.
	Message string
}

// TenantURL returns the base URL of the tenant with the given key, derived from EdgeURL by
// prefixing its host with "<key>." (keeping scheme and port): with EdgeURL
// "http://localhost:8080", TenantURL("acme") is "http://acme.localhost:8080". When EdgeURL is
// empty or unparsable it falls back to "http://<key>.<Domain>" (Domain defaulting to
// "localhost").
func (d Data) TenantURL(key string) string {
	if u, err := url.Parse(d.EdgeURL); err == nil && u.Host != "" && u.Scheme != "" {
		return u.Scheme + "://" + key + "." + u.Host
	}
	domain := d.Domain
	if domain == "" {
		domain = "localhost"
	}
	return "http://" + key + "." + domain
}

// StatusText returns the status code and its standard reason phrase, e.g. "404 Not Found", or
// an empty string when Status is zero.
func (d Data) StatusText() string {
	if d.Status == 0 {
		return ""
	}
	return strconv.Itoa(d.Status) + " " + http.StatusText(d.Status)
}

// pages maps a page name (e.g. "console.html") to its template, parsed together with the shared
// layout. It is built once at package initialisation from the embedded files; a template error is
// a programming error and panics at start (and fails the package tests).
var pages = mustParsePages()

func mustParsePages() map[string]*template.Template {
	entries, err := fs.Glob(pageFiles, "html/*.html")
	if err != nil {
		panic(err)
	}
	out := make(map[string]*template.Template)
	for _, path := range entries {
		if path == layoutFile {
			continue
		}
		name := strings.TrimPrefix(path, "html/")
		t := template.Must(template.New(name).ParseFS(pageFiles, layoutFile, path))
		out[name] = t
	}
	return out
}

// Names returns the names of all renderable pages in lexical order, e.g. "admin.html".
func Names() []string {
	names := make([]string, 0, len(pages))
	for n := range pages {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Render writes the page called name (one of Names, e.g. "console.html") rendered with data to
// w. It returns an error, and writes nothing, when name is not a known page; otherwise it returns
// the template execution or write error, if any. The page is rendered into memory first, so a
// failure never leaves half a page in w.
func Render(w io.Writer, name string, data Data) error {
	t, ok := pages[name]
	if !ok {
		return fmt.Errorf("templates: unknown page %q", name)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", data); err != nil {
		return fmt.Errorf("templates: render %s: %w", name, err)
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// Static returns the embedded static files, rooted so that "widget.js", "console.js",
// "admin.js", "auth.js" and "app.css" are at the top level. Serve it at /static/ (the pages load
// /static/app.css, /static/auth.js, /static/console.js and /static/admin.js) and serve its
// "widget.js" at /widget.js (what tenants embed). The JavaScript files must be served with
// Content-Type "text/javascript; charset=utf-8" (http.FileServerFS does so by extension).
func Static() fs.FS {
	sub, err := fs.Sub(staticFiles, "static")
	if err != nil {
		panic(err) // "static" is a fixed, embedded directory; this cannot fail.
	}
	return sub
}

// Handler returns a net/http handler that answers every request with the page called name
// rendered with data, the given HTTP status (e.g. http.StatusNotFound) and the headers
// "Content-Type: text/html; charset=utf-8", "Cache-Control: no-store" and
// "X-Content-Type-Options: nosniff". If the page cannot be rendered (an unknown name) it answers
// 500 with a plain-text error. For HEAD requests only the headers are written.
func Handler(name string, status int, data Data) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var buf bytes.Buffer
		if err := Render(&buf, name, data); err != nil {
			http.Error(w, "internal error: page unavailable", http.StatusInternalServerError)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Length", strconv.Itoa(buf.Len()))
		w.WriteHeader(status)
		if r.Method != http.MethodHead {
			_, _ = w.Write(buf.Bytes())
		}
	})
}
