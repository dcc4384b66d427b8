package web

import (
	"fmt"
	"net/http"
	"time"

	"atende/cell"
	"atende/cell/service"

	"github.com/gofiber/fiber/v2"
)

// productRoutes registers the chat-product endpoints beyond the skeleton: transfer, labels,
// read receipts, CSAT, transcript, notes, queue position, availability and the offline form,
// settings, departments, canned responses, reports and the webhook delivery log.
//
// GET /api/availability is public and registered in routes, before the authenticated group
// (a Fiber group's middleware applies to every route registered under its prefix afterwards).
func (s *Server) productRoutes(authed fiber.Router) {
	authed.Post("/chat/:id/transfer", s.transfer)
	authed.Put("/chats/:id/labels", s.setLabels)
	authed.Post("/chats/:id/read", s.markRead)
	authed.Post("/chats/:id/csat", s.rateChat)
	authed.Get("/chats/:id/transcript", s.transcript)
	authed.Get("/chats/:id/notes", s.notes)
	authed.Get("/chats/:id/queue-position", s.queuePosition)
	authed.Post("/offline-messages", rateLimit(LimitChatCreate), s.leaveOfflineMessage)
	authed.Get("/offline-messages", s.offlineMessages)
	authed.Get("/settings", s.getSettings)
	authed.Put("/settings", s.putSettings)
	authed.Get("/departments", s.departments)
	authed.Post("/departments", s.createDepartment)
	authed.Delete("/departments/:id", s.deleteDepartment)
	authed.Get("/canned", s.canned)
	authed.Post("/canned", s.createCanned)
	authed.Delete("/canned/:id", s.deleteCanned)
	authed.Get("/reports/summary", s.reportSummary)
	authed.Get("/webhooks/deliveries", s.webhookDeliveries)
}

func (s *Server) availability(c *fiber.Ctx) error {
	return c.JSON(s.svc.Availability(c.UserContext()))
}

type transferRequest struct {
	AgentID      string `json:"agentId" validate:"max=64"`
	DepartmentID string `json:"departmentId" validate:"max=64"`
	Note         string `json:"note" validate:"max=2000"`
}

func (s *Server) transfer(c *fiber.Ctx) error {
	var req transferRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	chat, err := s.svc.Transfer(c.UserContext(), principal(c), c.Params("id"), service.TransferInput{AgentID: req.AgentID, DepartmentID: req.DepartmentID, Note: req.Note})
	if err != nil {
		return err
	}
	return c.JSON(chat)
}

type labelsRequest struct {
	Labels []string `json:"labels" validate:"max=20,dive,max=32"`
}

func (s *Server) setLabels(c *fiber.Ctx) error {
	var req labelsRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	chat, err := s.svc.SetLabels(c.UserContext(), principal(c), c.Params("id"), req.Labels)
	if err != nil {
		return err
	}
	return c.JSON(chat)
}

type readRequest struct {
	Seq int64 `json:"seq" validate:"gte=0"`
}

func (s *Server) markRead(c *fiber.Ctx) error {
	var req readRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	chat, err := s.svc.MarkRead(c.UserContext(), principal(c), c.Params("id"), req.Seq)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"chatId": chat.ID, "visitorReadSeq": chat.VisitorReadSeq, "agentReadSeq": chat.AgentReadSeq})
}

type csatRequest struct {
	Score   int    `json:"score" validate:"required,min=1,max=5"`
	Comment string `json:"comment" validate:"max=1000"`
}

func (s *Server) rateChat(c *fiber.Ctx) error {
	var req csatRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	chat, err := s.svc.RateChat(c.UserContext(), principal(c), c.Params("id"), req.Score, req.Comment)
	if err != nil {
		return err
	}
	return c.JSON(chat)
}

func (s *Server) transcript(c *fiber.Ctx) error {
	text, err := s.svc.Transcript(c.UserContext(), principal(c), c.Params("id"))
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderContentType, "text/plain; charset=utf-8")
	c.Set(fiber.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="chat-%s.txt"`, safeFilename(c.Params("id"))))
	return c.SendString(text)
}

// safeFilename keeps only characters that need no quoting in a Content-Disposition filename.
func safeFilename(s string) string {
	out := make([]rune, 0, len(s))
	for _, r := range s {
		if (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') || r == '-' || r == '_' {
			out = append(out, r)
		}
	}
	return string(out)
}

func (s *Server) notes(c *fiber.Ctx) error { return s.page(c, s.svc.Notes) }

func (s *Server) queuePosition(c *fiber.Ctx) error {
	q, err := s.svc.QueuePosition(c.UserContext(), principal(c), c.Params("id"))
	if err != nil {
		return err
	}
	return c.JSON(q)
}

type offlineRequest struct {
	Name    string `json:"name" validate:"max=100"`
	Email   string `json:"email" validate:"required,email,max=254"`
	Message string `json:"message" validate:"required,max=10000"`
}

func (s *Server) leaveOfflineMessage(c *fiber.Ctx) error {
	var req offlineRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	m, err := s.svc.LeaveOfflineMessage(c.UserContext(), principal(c), req.Name, req.Email, req.Message)
	if err != nil {
		return err
	}
	return c.Status(http.StatusCreated).JSON(m)
}

func (s *Server) offlineMessages(c *fiber.Ctx) error {
	ms, err := s.svc.OfflineMessages(c.UserContext(), principal(c))
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"messages": ms})
}

func (s *Server) getSettings(c *fiber.Ctx) error {
	st, err := s.svc.Settings(c.UserContext(), principal(c))
	if err != nil {
		return err
	}
	return c.JSON(st)
}

func (s *Server) putSettings(c *fiber.Ctx) error {
	var req cell.Settings
	if err := bind(c, &req); err != nil {
		return err
	}
	st, err := s.svc.SaveSettings(c.UserContext(), principal(c), req)
	if err != nil {
		return err
	}
	return c.JSON(st)
}

func (s *Server) departments(c *fiber.Ctx) error {
	ds, err := s.svc.Departments(c.UserContext(), principal(c))
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"departments": ds})
}

type departmentRequest struct {
	Name    string `json:"name" validate:"required,max=80"`
	Routing string `json:"routing" validate:"omitempty,oneof=manual auto"`
}

func (s *Server) createDepartment(c *fiber.Ctx) error {
	var req departmentRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	d, err := s.svc.CreateDepartment(c.UserContext(), principal(c), req.Name, req.Routing)
	if err != nil {
		return err
	}
	return c.Status(http.StatusCreated).JSON(d)
}

func (s *Server) deleteDepartment(c *fiber.Ctx) error {
	if err := s.svc.DeleteDepartment(c.UserContext(), principal(c), c.Params("id")); err != nil {
		return err
	}
	return c.SendStatus(http.StatusNoContent)
}

func (s *Server) canned(c *fiber.Ctx) error {
	cs, err := s.svc.CannedResponses(c.UserContext(), principal(c))
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"cannedResponses": cs})
}

type cannedRequest struct {
	Shortcut string `json:"shortcut" validate:"required,max=32"`
	Title    string `json:"title" validate:"max=80"`
	Body     string `json:"body" validate:"required,max=10000"`
}

func (s *Server) createCanned(c *fiber.Ctx) error {
	var req cannedRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	cr, err := s.svc.CreateCanned(c.UserContext(), principal(c), req.Shortcut, req.Title, req.Body)
	if err != nil {
		return err
	}
	return c.Status(http.StatusCreated).JSON(cr)
}

func (s *Server) deleteCanned(c *fiber.Ctx) error {
	if err := s.svc.DeleteCanned(c.UserContext(), principal(c), c.Params("id")); err != nil {
		return err
	}
	return c.SendStatus(http.StatusNoContent)
}

// reportSummary answers GET /api/reports/summary?from=&to= (RFC 3339; default: the last 7 days).
func (s *Server) reportSummary(c *fiber.Ctx) error {
	to, from := time.Now().UTC(), time.Now().UTC().Add(-7*24*time.Hour)
	var err error
	if v := c.Query("from"); v != "" {
		if from, err = time.Parse(time.RFC3339, v); err != nil {
			return cell.Errorf(cell.EInvalid, "from must be an RFC 3339 time")
		}
	}
	if v := c.Query("to"); v != "" {
		if to, err = time.Parse(time.RFC3339, v); err != nil {
			return cell.Errorf(cell.EInvalid, "to must be an RFC 3339 time")
		}
	}
	r, err := s.svc.Report(c.UserContext(), principal(c), from, to)
	if err != nil {
		return err
	}
	return c.JSON(r)
}

func (s *Server) webhookDeliveries(c *fiber.Ctx) error {
	ds, err := s.svc.WebhookDeliveries(c.UserContext(), principal(c))
	if err != nil {
		return err
	}
	return c.JSON(ds)
}
