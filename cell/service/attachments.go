package service

import (
	"context"
	"net/http"
	"path"
	"slices"
	"strings"
	"time"

	"atende/cell"
	"atende/cell/auth"
)

// AttachmentInput announces a file the caller is about to upload. Size is in bytes.
type AttachmentInput struct {
	ChatID      string
	Filename    string
	ContentType string
	Size        int64
}

// Upload is where and how to PUT an announced file: UploadURL is a presigned PUT valid until
// ExpiresAt that accepts exactly the announced size and content type, sent with UploadHeaders.
type Upload struct {
	AttachmentID  string            `json:"attachmentId"`
	UploadURL     string            `json:"uploadUrl"`
	UploadMethod  string            `json:"uploadMethod"`
	UploadHeaders map[string]string `json:"uploadHeaders"`
	ExpiresAt     time.Time         `json:"expiresAt"`
}

// CreateAttachment records an attachment of a chat the caller may write in and returns a
// presigned PUT for it. The object key is generated here ("t/<tenantId>/c/<chatId>/<random>");
// nothing the client sends becomes part of it. The content type must be on the tenant's
// allow-list and the size within MaxUploadBytes (too_large otherwise).
func (s *Service) CreateAttachment(ctx context.Context, p cell.Principal, in AttachmentInput) (Upload, error) {
	chat, err := s.Chat(ctx, p, in.ChatID)
	if err != nil {
		return Upload{}, err
	}
	if err := s.maySend(p, chat, false); err != nil {
		return Upload{}, err
	}
	in.ContentType = strings.ToLower(strings.TrimSpace(in.ContentType))
	if !slices.Contains(s.cfg.UploadContentTypes, in.ContentType) {
		return Upload{}, cell.Errorf(cell.EInvalid, "content type %q is not allowed (allowed: %s)", in.ContentType, strings.Join(s.cfg.UploadContentTypes, ", "))
	}
	if in.Size <= 0 {
		return Upload{}, cell.Errorf(cell.EInvalid, "size must be a positive number of bytes")
	}
	if in.Size > s.cfg.MaxUploadBytes {
		return Upload{}, cell.Errorf(cell.ETooLarge, "files may be at most %d bytes", s.cfg.MaxUploadBytes)
	}
	name := path.Base(strings.ReplaceAll(strings.TrimSpace(in.Filename), "\\", "/"))
	if name == "" || name == "." || name == "/" {
		return Upload{}, cell.Errorf(cell.EInvalid, "filename is required")
	}
	if err := validText("filename", name, 255); err != nil {
		return Upload{}, err
	}
	att := cell.Attachment{ID: auth.RandomID(), ChatID: chat.ID, Filename: name, ContentType: in.ContentType, Size: in.Size, UploadedBy: p.Author(), CreatedAt: s.now()}
	att.Key = s.blob.ChatKey(chat.ID, auth.RandomID())
	url, headers, err := s.blob.PresignPut(ctx, att.Key, att.ContentType, att.Size, s.cfg.TenantID, s.cfg.PresignTTL)
	if err != nil {
		return Upload{}, err
	}
	if err := s.store.InsertAttachment(ctx, &att); err != nil {
		return Upload{}, err
	}
	return Upload{AttachmentID: att.ID, UploadURL: url, UploadMethod: "PUT", UploadHeaders: headers, ExpiresAt: s.now().Add(s.cfg.PresignTTL)}, nil
}

// Download is a presigned GET of an attachment, valid until ExpiresAt.
type Download struct {
	URL         string    `json:"url"`
	ExpiresAt   time.Time `json:"expiresAt"`
	Filename    string    `json:"filename"`
	ContentType string    `json:"contentType"`
	Size        int64     `json:"size"`
}

// AttachmentDownload returns a presigned GET for an attachment of a chat the caller may see.
func (s *Service) AttachmentDownload(ctx context.Context, p cell.Principal, id string) (Download, error) {
	att, err := s.store.Attachment(ctx, id)
	if err != nil {
		return Download{}, err
	}
	if _, err := s.Chat(ctx, p, att.ChatID); err != nil {
		return Download{}, cell.Errorf(cell.ENotFound, "attachment not found")
	}
	url, err := s.blob.PresignGet(ctx, att.Key, att.Filename, att.ContentType, s.cfg.PresignTTL)
	if err != nil {
		return Download{}, err
	}
	return Download{URL: url, ExpiresAt: s.now().Add(s.cfg.PresignTTL), Filename: att.Filename, ContentType: att.ContentType, Size: att.Size}, nil
}

// sniffBytes is how much of a file content sniffing reads (the WHATWG MIME Sniffing standard,
// as implemented by net/http.DetectContentType, looks at most at 512 bytes).
const sniffBytes = 512

// checkMagic compares the uploaded bytes with the announced content type, so a file announced as
// an image cannot be HTML or a script (OWASP File Upload Cheat Sheet: validate the file's
// signature, not its name or header). The sniffed type must equal the announced one.
func (s *Service) checkMagic(ctx context.Context, att cell.Attachment) error {
	head, err := s.blob.Head(ctx, att.Key, sniffBytes)
	if err != nil {
		return err
	}
	sniffed, _, _ := strings.Cut(http.DetectContentType(head), ";")
	if sniffed != att.ContentType {
		return cell.Errorf(cell.EInvalid, "the uploaded file is %s, not the announced %s", sniffed, att.ContentType)
	}
	return nil
}
