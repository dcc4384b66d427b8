package web

import (
	"bytes"
	"io/fs"
	"mime"
	"path"

	"atende/cell"
	"atende/templates"

	"github.com/gofiber/fiber/v2"
)

// pageRoutes serves the console, widget demo and admin pages, the widget script and the static
// files, all from the templates package.
func (s *Server) pageRoutes() {
	data := templates.Data{TenantID: s.cfg.TenantID, TenantKey: s.cfg.TenantKey, TenantName: s.svc.PublicSettings().Name, PublicURL: s.cfg.PublicURL}
	page := func(name, title string) fiber.Handler {
		d := data
		d.Title = title
		return func(c *fiber.Ctx) error {
			var buf bytes.Buffer
			if err := templates.Render(&buf, name, d); err != nil {
				return err
			}
			c.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
			c.Set(fiber.HeaderCacheControl, "no-store")
			return c.Send(buf.Bytes())
		}
	}
	s.app.Get("/", func(c *fiber.Ctx) error { return c.Redirect("/console", fiber.StatusFound) })
	s.app.Get("/console", page("console.html", "Console"))
	s.app.Get("/widget-demo", page("widget-demo.html", "Widget demo"))
	s.app.Get("/admin", page("admin.html", "Admin"))
	static := templates.Static()
	serve := func(name string) fiber.Handler {
		return func(c *fiber.Ctx) error {
			b, err := fs.ReadFile(static, name)
			if err != nil {
				return cell.Errorf(cell.ENotFound, "no such file")
			}
			ct := mime.TypeByExtension(path.Ext(name))
			if ct == "" {
				ct = fiber.MIMEOctetStream
			}
			c.Set(fiber.HeaderContentType, ct)
			c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
			c.Set(fiber.HeaderCacheControl, "no-cache")
			return c.Send(b)
		}
	}
	s.app.Get("/widget.js", serve("widget.js"))
	s.app.Get("/static/:file", func(c *fiber.Ctx) error { return serve(path.Base(c.Params("file")))(c) })
}
