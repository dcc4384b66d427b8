package web

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"atende/cell"
	"atende/cell/service"

	"github.com/go-playground/validator/v10"
	"github.com/gofiber/fiber/v2"
)

// validate checks request shapes (go-playground/validator struct tags).
var validate = validator.New(validator.WithRequiredStructEnabled())

// bind decodes the JSON body into req and validates it; a malformed or invalid body is an
// invalid error naming the problem, and nothing is changed.
func bind(c *fiber.Ctx, req any) error {
	if len(c.Body()) == 0 {
		return cell.Errorf(cell.EInvalid, "a JSON body is required")
	}
	// Only application/json: a text/plain POST needs no CORS preflight, so accepting it would let
	// any page send blind requests (OWASP CSRF Prevention Cheat Sheet).
	if !c.Is("json") {
		return fiber.NewError(fiber.StatusUnsupportedMediaType, "Content-Type must be application/json")
	}
	if err := checkJSONKeys(c.Body()); err != nil {
		return err
	}
	if err := json.Unmarshal(c.Body(), req); err != nil {
		return cell.Errorf(cell.EInvalid, "malformed JSON body: %v", err)
	}
	if err := validate.Struct(req); err != nil {
		if verrs, ok := err.(validator.ValidationErrors); ok && len(verrs) > 0 {
			f := verrs[0]
			return cell.Errorf(cell.EInvalid, "field %s fails rule %q", f.Field(), f.Tag())
		}
		return cell.Errorf(cell.EInvalid, "invalid body: %v", err)
	}
	return nil
}

type loginRequest struct {
	Email    string `json:"email" validate:"required,email,max=254"`
	Password string `json:"password" validate:"required,max=256"`
}

func (s *Server) login(c *fiber.Ctx) error {
	var req loginRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	out, err := s.svc.Login(c.UserContext(), req.Email, req.Password)
	if err != nil {
		return err
	}
	return c.JSON(out)
}

type refreshRequest struct {
	RefreshToken string `json:"refreshToken" validate:"required,max=4096"`
}

func (s *Server) refresh(c *fiber.Ctx) error {
	var req refreshRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	out, err := s.svc.Refresh(c.UserContext(), req.RefreshToken)
	if err != nil {
		return err
	}
	return c.JSON(out)
}

func (s *Server) logout(c *fiber.Ctx) error {
	if err := s.svc.Logout(c.UserContext(), principal(c)); err != nil {
		return err
	}
	return c.SendStatus(http.StatusNoContent)
}

func (s *Server) me(c *fiber.Ctx) error {
	u, err := s.svc.Me(c.UserContext(), principal(c))
	if err != nil {
		return err
	}
	return c.JSON(u)
}

func (s *Server) wsTicket(c *fiber.Ctx) error {
	t, err := s.svc.NewTicket(principal(c))
	if err != nil {
		return err
	}
	return c.JSON(t)
}

type visitorSessionRequest struct {
	Name  string `json:"name" validate:"max=100"`
	Email string `json:"email" validate:"omitempty,email,max=254"`
}

func (s *Server) visitorSession(c *fiber.Ctx) error {
	var req visitorSessionRequest
	if len(c.Body()) > 0 {
		if err := bind(c, &req); err != nil {
			return err
		}
	}
	out, err := s.svc.NewVisitorSession(c.UserContext(), req.Name, req.Email)
	if err != nil {
		return err
	}
	return c.Status(http.StatusCreated).JSON(out)
}

func (s *Server) publicSettings(c *fiber.Ctx) error {
	return c.JSON(s.svc.PublicSettings(c.UserContext()))
}

type openChatRequest struct {
	Message      string `json:"message"`
	ClientMsgID  string `json:"clientMsgId"`
	DepartmentID string `json:"departmentId" validate:"max=64"`
}

func (s *Server) openChat(c *fiber.Ctx) error {
	var req openChatRequest
	if len(c.Body()) > 0 {
		if err := bind(c, &req); err != nil {
			return err
		}
	}
	chat, created, err := s.svc.OpenChat(c.UserContext(), principal(c), service.OpenChatInput{Message: req.Message, ClientMsgID: req.ClientMsgID, DepartmentID: req.DepartmentID})
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return c.Status(status).JSON(chat)
}

// chatList is the shape of every list of chats.
type chatList struct {
	Chats []cell.Chat `json:"chats"`
}

func (s *Server) queue(c *fiber.Ctx) error {
	chats, err := s.svc.Queue(c.UserContext(), principal(c))
	if err != nil {
		return err
	}
	return c.JSON(chatList{Chats: chats})
}

func (s *Server) listChats(c *fiber.Ctx) error {
	status := cell.ChatStatus(c.Query("status", string(cell.ChatActive)))
	chats, err := s.svc.ListChats(c.UserContext(), principal(c), status)
	if err != nil {
		return err
	}
	return c.JSON(chatList{Chats: chats})
}

func (s *Server) getChat(c *fiber.Ctx) error {
	chat, err := s.svc.Chat(c.UserContext(), principal(c), c.Params("id"))
	if err != nil {
		return err
	}
	return c.JSON(chat)
}

func (s *Server) accept(c *fiber.Ctx) error {
	chat, err := s.svc.Accept(c.UserContext(), principal(c), c.Params("id"))
	if err != nil {
		return err
	}
	return c.JSON(chat)
}

func (s *Server) resolve(c *fiber.Ctx) error {
	chat, err := s.svc.Resolve(c.UserContext(), principal(c), c.Params("id"))
	if err != nil {
		return err
	}
	return c.JSON(chat)
}

// queryInt reads a non-negative integer query parameter (def when absent).
func queryInt(c *fiber.Ctx, name string, def int64) (int64, error) {
	v := c.Query(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, cell.Errorf(cell.EInvalid, "%s must be a non-negative integer", name)
	}
	return n, nil
}

func (s *Server) history(c *fiber.Ctx) error { return s.page(c, s.svc.History) }

// page answers one page of a chat's messages or notes (?since=SEQ&limit=N) read by read.
func (s *Server) page(c *fiber.Ctx, read func(context.Context, cell.Principal, string, int64, int) (service.History, error)) error {
	since, err := queryInt(c, "since", 0)
	if err != nil {
		return err
	}
	limit, err := queryInt(c, "limit", 0)
	if err != nil {
		return err
	}
	h, err := read(c.UserContext(), principal(c), c.Params("id"), since, int(min(limit, 1<<20)))
	if err != nil {
		return err
	}
	return c.JSON(h)
}

type sendMessageRequest struct {
	ChatID       string `json:"chatId" validate:"required,max=64"`
	Body         string `json:"body"`
	ClientMsgID  string `json:"clientMsgId" validate:"required,max=64"`
	AttachmentID string `json:"attachmentId" validate:"max=64"`
	// Private makes the message a note (staff only).
	Private bool `json:"private"`
}

func (s *Server) sendMessage(c *fiber.Ctx) error {
	var req sendMessageRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	msg, replay, err := s.svc.SendMessage(c.UserContext(), principal(c), service.SendInput{
		ChatID: req.ChatID, Body: req.Body, ClientMsgID: req.ClientMsgID, AttachmentID: req.AttachmentID, Private: req.Private,
	})
	if err != nil {
		return err
	}
	status := http.StatusCreated
	if replay {
		status = http.StatusOK
	}
	return c.Status(status).JSON(msg)
}

type attachmentRequest struct {
	ChatID      string `json:"chatId" validate:"required,max=64"`
	Filename    string `json:"filename" validate:"required,max=255"`
	ContentType string `json:"contentType" validate:"required,max=100"`
	Size        int64  `json:"size" validate:"required,gt=0"`
}

func (s *Server) createAttachment(c *fiber.Ctx) error {
	var req attachmentRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	up, err := s.svc.CreateAttachment(c.UserContext(), principal(c), service.AttachmentInput{
		ChatID: req.ChatID, Filename: req.Filename, ContentType: req.ContentType, Size: req.Size,
	})
	if err != nil {
		return err
	}
	return c.Status(http.StatusCreated).JSON(up)
}

// attachment answers a presigned GET: as JSON for clients that name application/json in Accept
// (the console, which cannot follow a cross-origin redirect with its bearer header), as a 302
// redirect otherwise (curl's default "*/*" included).
func (s *Server) attachment(c *fiber.Ctx) error {
	d, err := s.svc.AttachmentDownload(c.UserContext(), principal(c), c.Params("id"))
	if err != nil {
		return err
	}
	if strings.Contains(c.Get(fiber.HeaderAccept), fiber.MIMEApplicationJSON) {
		return c.JSON(d)
	}
	return c.Redirect(d.URL, http.StatusFound)
}

// agentView is a user as listed to tenant-admins, with their presence.
type agentView struct {
	cell.User
	Presence string `json:"presence"`
}

func (s *Server) listAgents(c *fiber.Ctx) error {
	users, err := s.svc.ListAgents(c.UserContext(), principal(c))
	if err != nil {
		return err
	}
	out := make([]agentView, len(users))
	for i, u := range users {
		if u.Departments == nil {
			u.Departments = []string{}
		}
		out[i] = agentView{User: u, Presence: s.svc.PresenceOf(u.ID)}
	}
	return c.JSON(fiber.Map{"agents": out})
}

type createAgentRequest struct {
	Email    string   `json:"email" validate:"required,email,max=254"`
	Name     string   `json:"name" validate:"max=100"`
	Password string   `json:"password" validate:"omitempty,min=8,max=72"`
	Roles    []string `json:"roles" validate:"max=2,dive,oneof=agent tenant-admin"`
}

func (s *Server) createAgent(c *fiber.Ctx) error {
	var req createAgentRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	out, err := s.svc.CreateAgent(c.UserContext(), principal(c), req.Email, req.Name, req.Password, req.Roles)
	if err != nil {
		return err
	}
	return c.Status(http.StatusCreated).JSON(out)
}

func (s *Server) deleteAgent(c *fiber.Ctx) error {
	if err := s.svc.DeleteAgent(c.UserContext(), principal(c), c.Params("id")); err != nil {
		return err
	}
	return c.SendStatus(http.StatusNoContent)
}

func (s *Server) auditLog(c *fiber.Ctx) error {
	entries, err := s.svc.AuditLog(c.UserContext(), principal(c))
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"entries": entries})
}

type passwordRequest struct {
	CurrentPassword string `json:"currentPassword" validate:"required,max=256"`
	NewPassword     string `json:"newPassword" validate:"required,min=8,max=72"`
}

func (s *Server) changePassword(c *fiber.Ctx) error {
	var req passwordRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	out, err := s.svc.ChangePassword(c.UserContext(), principal(c), req.CurrentPassword, req.NewPassword)
	if err != nil {
		return err
	}
	return c.JSON(out)
}

type updateAgentRequest struct {
	Disabled    *bool    `json:"disabled"`
	Departments []string `json:"departments" validate:"omitempty,max=50,dive,max=64"`
	Capacity    *int     `json:"capacity" validate:"omitempty,min=0,max=50"`
}

// updateAgent changes an agent's disabled flag and/or routing (departments, capacity); at least
// one of them must be given.
func (s *Server) updateAgent(c *fiber.Ctx) error {
	var req updateAgentRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	if req.Disabled == nil && req.Departments == nil && req.Capacity == nil {
		return cell.Errorf(cell.EInvalid, "give disabled, departments or capacity")
	}
	var u cell.User
	var err error
	if req.Departments != nil || req.Capacity != nil {
		cur, err := s.svc.Agent(c.UserContext(), principal(c), c.Params("id"))
		if err != nil {
			return err
		}
		depts, capacity := cur.Departments, cur.Capacity
		if req.Departments != nil {
			depts = req.Departments
		}
		if req.Capacity != nil {
			capacity = *req.Capacity
		}
		if u, err = s.svc.SetAgentRouting(c.UserContext(), principal(c), c.Params("id"), depts, capacity); err != nil {
			return err
		}
	}
	if req.Disabled != nil {
		if u, err = s.svc.SetAgentDisabled(c.UserContext(), principal(c), c.Params("id"), *req.Disabled); err != nil {
			return err
		}
	}
	return c.JSON(u)
}
