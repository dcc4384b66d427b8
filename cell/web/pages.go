package web

import (
	"bytes"
	"context"
	"io/fs"
	"mime"
	"path"

	"atende/cell"
	"atende/templates"

	"github.com/gofiber/fiber/v2"
)

// pageRoutes serves the console, widget demo and admin pages, the widget script (the chat core and
// the widget joined into one file, templates.WidgetScript) and the static files, all from the
// templates package.
func (s *Server) pageRoutes() {
	data := templates.Data{TenantID: s.cfg.TenantID, TenantKey: s.cfg.TenantKey, TenantName: s.svc.PublicSettings(context.Background()).Name, PublicURL: s.cfg.PublicURL}
	page := func(name, title, frameAncestors string) fiber.Handler {
		d := data
		d.Title = title
		csp := pageCSP(s.cfg.S3PublicEndpoint, frameAncestors)
		return func(c *fiber.Ctx) error {
			var buf bytes.Buffer
			if err := templates.Render(&buf, name, d); err != nil {
				return err
			}
			c.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
			c.Set(fiber.HeaderCacheControl, "no-store")
			c.Set(fiber.HeaderContentSecurityPolicy, csp)
			return c.Send(buf.Bytes())
		}
	}
	s.app.Get("/", func(c *fiber.Ctx) error { return c.Redirect("/console", fiber.StatusFound) })
	// Staff pages may not be framed at all (clickjacking); the demo page stands in for the
	// tenant's own site and may frame itself.
	s.app.Get("/console", page("console.html", "Console", "'none'"))
	s.app.Get("/widget-demo", page("widget-demo.html", "Widget demo", "'self'"))
	s.app.Get("/admin", page("admin.html", "Admin", "'none'"))
	// send answers with b as a file of content type ct that browsers revalidate before each use.
	send := func(c *fiber.Ctx, ct string, b []byte) error {
		c.Set(fiber.HeaderContentType, ct)
		c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
		c.Set(fiber.HeaderCacheControl, "no-cache")
		return c.Send(b)
	}
	widget := templates.WidgetScript()
	s.app.Get("/widget.js", func(c *fiber.Ctx) error { return send(c, "text/javascript; charset=utf-8", widget) })
	static := templates.Static()
	s.app.Get("/static/:file", func(c *fiber.Ctx) error {
		name := path.Base(c.Params("file"))
		b, err := fs.ReadFile(static, name)
		if err != nil {
			return cell.Errorf(cell.ENotFound, "no such file")
		}
		ct := mime.TypeByExtension(path.Ext(name))
		if ct == "" {
			ct = fiber.MIMEOctetStream
		}
		return send(c, ct, b)
	})
}
