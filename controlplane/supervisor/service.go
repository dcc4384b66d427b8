package supervisor

import (
	"context"
	"crypto/rand"
	"fmt"
	"math/big"
	"net/mail"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"atende/cell"
	"atende/cell/auth"
	"atende/controlplane"
)

// Roles given to bootstrap users.
var (
	adminRoles = []string{"tenant-admin", "agent"}
	agentRoles = []string{"agent"}
)

// Default branding of a new tenant.
const (
	defaultPrimaryColor = "#2563eb"
	defaultWelcomeText  = "Hi! How can we help you today?"
)

// GeneratedPasswordLength is the length of generated passwords, in characters.
const GeneratedPasswordLength = 20

// passwordAlphabet omits look-alikes (0/O, 1/l/I) so a password read from a terminal can be typed.
const passwordAlphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"

// GeneratePassword returns a random password of GeneratedPasswordLength characters from
// crypto/rand (about 117 bits).
func GeneratePassword() string {
	b := make([]byte, GeneratedPasswordLength)
	max := big.NewInt(int64(len(passwordAlphabet)))
	for i := range b {
		n, _ := rand.Int(rand.Reader, max) // never fails with crypto/rand.Reader
		b[i] = passwordAlphabet[n.Int64()]
	}
	return string(b)
}

// CreateTenant implements controlplane.TenantService. The key is trimmed and lowercased; the
// name is required (at most 200 characters); origins must be exact origins; an empty plan is
// controlplane.DefaultPlan; the admin email is required; a given password must be 8 to 72 bytes
// (bcrypt's limit). Passwords are hashed with bcrypt (default cost) for the cell and returned in
// clear only in the answer.
func (s *Supervisor) CreateTenant(ctx context.Context, req controlplane.NewTenant) (*controlplane.CreatedTenant, error) {
	req.Key = strings.ToLower(strings.TrimSpace(req.Key))
	req.Name = strings.TrimSpace(req.Name)
	if err := controlplane.ValidateKey(req.Key); err != nil {
		return nil, err
	}
	if req.Name == "" || len(req.Name) > 200 {
		return nil, controlplane.Errorf(controlplane.EInvalid, "name is required (at most 200 characters)")
	}
	for _, o := range req.AllowedOrigins {
		if err := controlplane.ValidateOrigin(o); err != nil {
			return nil, err
		}
	}
	if req.Plan == "" {
		req.Plan = controlplane.DefaultPlan
	}
	tier, err := s.tierOf(req)
	if err != nil {
		return nil, err
	}
	limits, ok := controlplane.Plans[req.Plan]
	if !ok {
		return nil, controlplane.Errorf(controlplane.EInvalid, "plan %q is unknown (use free, pro or enterprise)", req.Plan)
	}
	created := &controlplane.CreatedTenant{}
	var users []cell.BootstrapUser
	for i, u := range append([]controlplane.NewUser{req.Admin}, req.Agents...) {
		roles := agentRoles
		if i == 0 {
			roles = adminRoles
		}
		bu, creds, err := bootstrapUser(u, roles)
		if err != nil {
			return nil, err
		}
		users = append(users, bu)
		if i == 0 {
			created.Admin = creds
		} else {
			created.Agents = append(created.Agents, creds)
		}
	}
	seed := make([]byte, 32)
	_, _ = rand.Read(seed)
	now := time.Now().UTC()
	id := controlplane.NewTenantID()
	t := &controlplane.Tenant{
		ID: id, Key: req.Key, Name: req.Name, State: controlplane.StateCreationRequested,
		AllowedOrigins: append([]string{}, req.AllowedOrigins...), Plan: req.Plan, Limits: limits,
		Branding:  controlplane.Branding{PrimaryColor: defaultPrimaryColor, WelcomeText: defaultWelcomeText},
		Webhooks:  []controlplane.Webhook{},
		Dedicated: tier == controlplane.TierDedicated, Tier: tier, CreatedAt: now, UpdatedAt: now, URL: s.opts.Platform.TenantURL(req.Key),
		Cell:    controlplane.Cell{Driver: s.driver.Name(), Database: controlplane.DatabaseName(id), S3Prefix: controlplane.S3Prefix(id)},
		Secrets: controlplane.Secrets{SigningKeySeed: seed, SigningKeyID: controlplane.NewSigningKeyID(), BootstrapUsers: users},
	}
	t.Tenancy = controlplane.TenancyStrict // every tenant starts strict; SetTenancy changes it
	ev := controlplane.Event{TenantID: id, To: t.State, At: now, Reason: "requested by super-admin"}
	if err := s.store.CreateTenant(ctx, t, ev); err != nil {
		return nil, err
	}
	s.log.Info("tenant registered", attrTenantID, id, attrKey, t.Key)
	s.Poke()
	created.Tenant = t
	return created, nil
}

// bootstrapUser validates u and returns the cell's bootstrap user (bcrypt hash) and the clear
// credentials, generating a password when u has none.
func bootstrapUser(u controlplane.NewUser, roles []string) (cell.BootstrapUser, controlplane.Credentials, error) {
	email := strings.ToLower(strings.TrimSpace(u.Email))
	if a, err := mail.ParseAddress(email); err != nil || a.Address != email {
		return cell.BootstrapUser{}, controlplane.Credentials{}, controlplane.Errorf(controlplane.EInvalid, "email %q is not a valid email address", u.Email)
	}
	password := u.Password
	if password == "" {
		password = GeneratePassword()
	} else if len(password) < 8 || len(password) > 72 {
		return cell.BootstrapUser{}, controlplane.Credentials{}, controlplane.Errorf(controlplane.EInvalid, "the password of %s must be 8 to 72 bytes long", email)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return cell.BootstrapUser{}, controlplane.Credentials{}, fmt.Errorf("hash password: %w", err)
	}
	if len(u.Roles) > 0 {
		roles = u.Roles
	}
	name := u.Name
	if name == "" {
		name, _, _ = strings.Cut(email, "@")
	}
	return cell.BootstrapUser{Email: email, Name: name, Roles: append([]string{}, roles...), PasswordHash: string(hash)},
		controlplane.Credentials{Email: email, Password: password}, nil
}

// Tenants implements controlplane.TenantService.
func (s *Supervisor) Tenants(ctx context.Context, f controlplane.TenantFilter) ([]*controlplane.Tenant, error) {
	ts, err := s.store.Tenants(ctx, f)
	if err != nil {
		return nil, err
	}
	for _, t := range ts {
		s.present(t)
	}
	return ts, nil
}

// Tenant implements controlplane.TenantService: idOrKey is tried as an id first, then as the key
// of a tenant that is not deleted, then as the key of the most recently deleted tenant.
func (s *Supervisor) Tenant(ctx context.Context, idOrKey string) (*controlplane.Tenant, error) {
	t, err := s.find(ctx, idOrKey)
	if err != nil {
		return nil, err
	}
	s.present(t)
	return t, nil
}

// present fills the derived fields of a tenant shown to a caller.
func (s *Supervisor) present(t *controlplane.Tenant) {
	t.URL = s.opts.Platform.TenantURL(t.Key)
	t.SigningKeyID = t.Secrets.SigningKeyID
	if t.Tenancy == "" {
		t.Tenancy = controlplane.TenancyStrict
	}
}

func (s *Supervisor) find(ctx context.Context, idOrKey string) (*controlplane.Tenant, error) {
	idOrKey = strings.TrimSpace(idOrKey)
	if idOrKey == "" {
		return nil, controlplane.Errorf(controlplane.EInvalid, "a tenant id or key is required")
	}
	t, err := s.store.Tenant(ctx, idOrKey)
	if controlplane.ErrorCode(err) != controlplane.ENotFound {
		return t, err
	}
	key := strings.ToLower(idOrKey)
	t, err = s.store.TenantByKey(ctx, key)
	if controlplane.ErrorCode(err) != controlplane.ENotFound {
		return t, err
	}
	// No tenant holds the key now: the most recently deleted one that held it, if any, so its
	// tombstone and events stay reachable by key.
	deleted, err := s.store.Tenants(ctx, controlplane.TenantFilter{States: []controlplane.State{controlplane.StateDeleted}})
	if err != nil {
		return nil, err
	}
	for _, d := range deleted {
		if d.Key == key && (t == nil || d.UpdatedAt.After(t.UpdatedAt)) {
			t = d
		}
	}
	if t == nil {
		return nil, controlplane.Errorf(controlplane.ENotFound, "no tenant with id or key %q", idOrKey)
	}
	return t, nil
}

// intent loads the tenant, lets change decide what to record (returning false when nothing needs
// to change) and saves it, reloading and retrying when the supervisor saved the tenant meanwhile.
func (s *Supervisor) intent(ctx context.Context, idOrKey string, change func(t *controlplane.Tenant) (*controlplane.Event, bool, error)) (*controlplane.Tenant, error) {
	for attempt := 0; ; attempt++ {
		t, err := s.find(ctx, idOrKey)
		if err != nil {
			return nil, err
		}
		ev, changed, err := change(t)
		if err != nil || !changed {
			s.present(t)
			return t, err
		}
		err = s.store.SaveTenant(ctx, t, ev)
		if controlplane.ErrorCode(err) == controlplane.EConflict && attempt < 5 {
			time.Sleep(time.Duration(attempt+1) * 20 * time.Millisecond)
			continue
		}
		if err != nil {
			return nil, err
		}
		if ev != nil {
			s.log.Info("tenant state", attrTenantID, t.ID, attrKey, t.Key, attrFrom, string(ev.From), attrTo, string(ev.To), "reason", ev.Reason)
		}
		s.Poke()
		s.present(t)
		return t, nil
	}
}

// SuspendTenant implements controlplane.TenantService.
func (s *Supervisor) SuspendTenant(ctx context.Context, idOrKey string) (*controlplane.Tenant, error) {
	return s.intent(ctx, idOrKey, func(t *controlplane.Tenant) (*controlplane.Event, bool, error) {
		if t.State == controlplane.StateSuspendRequested || t.State == controlplane.StateSuspended {
			return nil, false, nil
		}
		ev, err := t.Transition(controlplane.StateSuspendRequested, "requested by super-admin", time.Now())
		return ev, true, err
	})
}

// ResumeTenant implements controlplane.TenantService.
func (s *Supervisor) ResumeTenant(ctx context.Context, idOrKey string) (*controlplane.Tenant, error) {
	return s.intent(ctx, idOrKey, func(t *controlplane.Tenant) (*controlplane.Event, bool, error) {
		if t.State == controlplane.StateLive || t.State == controlplane.StateResumeRequested {
			return nil, false, nil
		}
		reason := "requested by super-admin"
		if t.State == controlplane.StateDeletionPending {
			reason = "deletion cancelled by super-admin"
		}
		ev, err := t.Transition(controlplane.StateResumeRequested, reason, time.Now())
		t.DeleteAt, t.StateBeforeDeletion = nil, ""
		return ev, true, err
	})
}

// DeleteTenant implements controlplane.TenantService: the tenant is torn down after
// Options.DeleteGrace, or at the next pass when now is true.
func (s *Supervisor) DeleteTenant(ctx context.Context, idOrKey string, now bool) (*controlplane.Tenant, error) {
	return s.intent(ctx, idOrKey, func(t *controlplane.Tenant) (*controlplane.Event, bool, error) {
		at := time.Now().UTC()
		if !now {
			at = at.Add(s.opts.DeleteGrace)
		}
		switch t.State {
		case controlplane.StateDeleting, controlplane.StateDeleted, controlplane.StateDeletionFailed:
			return nil, false, nil
		case controlplane.StateDeletionPending:
			if !now || (t.DeleteAt != nil && !t.DeleteAt.After(at)) {
				return nil, false, nil
			}
			t.DeleteAt = &at
			return nil, true, nil
		}
		reason := fmt.Sprintf("requested by super-admin; teardown after %s", at.Format(time.RFC3339))
		before := t.State
		ev, err := t.Transition(controlplane.StateDeletionPending, reason, time.Now())
		t.DeleteAt, t.StateBeforeDeletion = &at, before
		return ev, true, err
	})
}

// CancelDeletion implements controlplane.TenantService: within its grace period, a
// deletion-pending tenant goes back to controlplane.RestoreState(StateBeforeDeletion) and the
// supervisor brings it there (a live tenant's cell is started again, a suspended one stays
// stopped).
func (s *Supervisor) CancelDeletion(ctx context.Context, idOrKey string) (*controlplane.Tenant, error) {
	return s.intent(ctx, idOrKey, func(t *controlplane.Tenant) (*controlplane.Event, bool, error) {
		if t.State != controlplane.StateDeletionPending {
			return nil, false, controlplane.Errorf(controlplane.EConflict,
				"the deletion of tenant %s cannot be cancelled: it is %s, not deletion-pending", t.Key, t.State)
		}
		to := controlplane.RestoreState(t.StateBeforeDeletion)
		reason := fmt.Sprintf("deletion cancelled by super-admin; back to %s", to)
		if t.StateBeforeDeletion != "" {
			reason += fmt.Sprintf(" (was %s)", t.StateBeforeDeletion)
		}
		ev, err := t.Transition(to, reason, time.Now())
		t.DeleteAt, t.StateBeforeDeletion = nil, ""
		return ev, true, err
	})
}

// RotateKeys implements controlplane.TenantService. Previous keys retired more than
// auth.RefreshTTL ago (the lifetime of the longest token) are dropped. Tenant.Generation grows by
// one, which makes the reconciler restart a live tenant's cell (restartCell); a suspended tenant
// gets the new keys when resumed.
func (s *Supervisor) RotateKeys(ctx context.Context, idOrKey string) (*controlplane.Tenant, error) {
	return s.intent(ctx, idOrKey, func(t *controlplane.Tenant) (*controlplane.Event, bool, error) {
		if t.State != controlplane.StateLive && t.State != controlplane.StateSuspended {
			return nil, false, controlplane.Errorf(controlplane.EConflict, "the keys of a %s tenant cannot be rotated (it must be live or suspended)", t.State)
		}
		now := time.Now().UTC()
		old := t.Secrets.SigningKeyID
		kid := t.Secrets.RotateSigningKey(now, auth.RefreshTTL)
		t.Generation++
		t.UpdatedAt = now
		kept := make([]string, 0, len(t.Secrets.PreviousKeys))
		for _, k := range t.Secrets.PreviousKeys {
			kept = append(kept, k.KID)
		}
		reason := fmt.Sprintf("signing key rotated by super-admin: %s replaces %s (verification keys kept: %s)", kid, old, strings.Join(kept, ", "))
		return &controlplane.Event{TenantID: t.ID, From: t.State, To: t.State, At: now, Reason: reason}, true, nil
	})
}

// TenantEvents implements controlplane.TenantService.
func (s *Supervisor) TenantEvents(ctx context.Context, idOrKey string) ([]controlplane.Event, error) {
	t, err := s.find(ctx, idOrKey)
	if err != nil {
		return nil, err
	}
	return s.store.Events(ctx, t.ID)
}

// CellStatus implements controlplane.TenantService.
func (s *Supervisor) CellStatus(ctx context.Context, idOrKey string) (controlplane.CellStatus, error) {
	t, err := s.find(ctx, idOrKey)
	if err != nil {
		return controlplane.CellStatus{}, err
	}
	st, err := s.driver.Status(ctx, t.ID)
	if err != nil {
		return controlplane.CellStatus{}, err
	}
	st.Healthy = st.State == controlplane.CellRunning && s.healthy(ctx, st.Address)
	return st, nil
}

// CellLogs implements controlplane.TenantService.
func (s *Supervisor) CellLogs(ctx context.Context, idOrKey string, lines int) ([]byte, error) {
	t, err := s.find(ctx, idOrKey)
	if err != nil {
		return nil, err
	}
	return s.driver.Logs(ctx, t.ID, lines)
}
