// Package process is the embedded default cell driver: one operating-system process per tenant,
// running the cell binary with the tenant's configuration in its environment. It restarts a cell
// that exits unexpectedly (exponential backoff) and makes cells die with the control plane
// (Linux parent-death signal). It records the fence (controlplane.FenceFrom) of the supervisor step
// that started a cell and refuses the calls of steps with a lower one (see Driver.Start).
package process

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"atende/cell"
	"atende/controlplane"
)

// DriverName is the name the process driver records in controlplane.Cell.Driver.
const DriverName = "process"

// LogFileName is the name of a cell's combined stdout/stderr file in its directory.
const LogFileName = "cell.log"

// Log attribute keys.
const (
	attrTenantID = "tenantId"
	attrAddr     = "addr"
	attrPID      = "pid"
)

// Options configure a Driver.
type Options struct {
	// Binary is the path of the cell executable. Required.
	Binary string
	// Dir holds one directory per tenant (Dir/<tenantId>/cell.log). Required.
	Dir string
	// Host is the interface cells listen on; default "127.0.0.1".
	Host string
	// Env is added to every cell's environment after its configuration; default PATH, HOME and
	// TMPDIR of this process.
	Env []string
	// StopTimeout is how long Stop waits after SIGTERM before SIGKILL; default 5 s.
	StopTimeout time.Duration
	// MinBackoff and MaxBackoff bound the delay before restarting a cell that exited: it starts
	// at MinBackoff (default 100 ms) and doubles up to MaxBackoff (default 5 s). It goes back to
	// MinBackoff once a cell ran for StableAfter (default 10 s).
	MinBackoff, MaxBackoff, StableAfter time.Duration
	// OnAddressChange, when set, is called (from the driver's goroutine, no lock held) after a
	// cell was restarted on a new address because its old port was taken.
	OnAddressChange func(tenantID, addr string)
	// Logger receives the driver's events; default slog.Default().
	Logger *slog.Logger
}

// Driver implements controlplane.Driver with child processes. Create it with New; call StopAll
// on shutdown.
type Driver struct {
	opts  Options
	log   *slog.Logger
	spawn chan spawnRequest

	mu    sync.Mutex
	cells map[string]*proc
}

var _ controlplane.Driver = (*Driver)(nil)

// New validates opts, applies defaults and returns a driver. It returns an error if Binary or
// Dir is missing.
func New(opts Options) (*Driver, error) {
	if opts.Binary == "" || opts.Dir == "" {
		return nil, errors.New("process: Binary and Dir are required")
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.Env == nil {
		for _, k := range []string{"PATH", "HOME", "TMPDIR"} {
			if v, ok := os.LookupEnv(k); ok {
				opts.Env = append(opts.Env, k+"="+v)
			}
		}
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = 5 * time.Second
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 5 * time.Second
	}
	if opts.StableAfter <= 0 {
		opts.StableAfter = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	d := &Driver{opts: opts, log: opts.Logger, spawn: make(chan spawnRequest), cells: map[string]*proc{}}
	go d.spawner()
	return d, nil
}

// spawnRequest asks the spawner goroutine to start cmd.
type spawnRequest struct {
	cmd   *exec.Cmd
	reply chan error
}

// spawner starts every child from one goroutine locked to its OS thread for the driver's
// lifetime. Linux delivers the parent-death signal when the *thread* that forked the child exits,
// and the Go runtime may retire idle threads; a locked thread that never exits is only gone when
// the whole control-plane process is.
func (d *Driver) spawner() {
	runtime.LockOSThread()
	for req := range d.spawn {
		req.reply <- req.cmd.Start()
	}
}

// proc is one tenant's cell process and its monitor.
type proc struct {
	tenantID string

	mu        sync.Mutex
	cfg       cell.Config
	state     string
	pid       int
	startedAt time.Time
	restarts  int
	lastExit  string
	fence     int64 // the highest fence of a call that touched the cell

	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

// Name implements controlplane.Driver.
func (d *Driver) Name() string { return DriverName }

// Start implements controlplane.Driver. A running (or restarting) cell of the tenant is left
// alone and its facts are returned. Otherwise the cell is launched on cfg.ListenAddr, or on a free
// port of Options.Host when that is empty; an error is returned if the binary cannot be started.
// With a fence in ctx (controlplane.WithFence) the driver records it on the cell and returns a
// conflict *Error, changing nothing, if the cell was touched with a higher one: a newer holder of
// the tenant's lease owns it. Stop and Remove check the fence the same way.
func (d *Driver) Start(ctx context.Context, cfg cell.Config) (controlplane.Cell, error) {
	if cfg.TenantID == "" {
		return controlplane.Cell{}, controlplane.Errorf(controlplane.EInvalid, "cell config without tenant id")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	fence, _ := controlplane.FenceFrom(ctx)
	if p := d.cells[cfg.TenantID]; p != nil {
		if err := p.checkFence(ctx); err != nil {
			return controlplane.Cell{}, err
		}
		p.mu.Lock()
		running := p.state != controlplane.CellStopped
		if running {
			p.fence = max(p.fence, fence)
		} else {
			fence = max(p.fence, fence)
		}
		p.mu.Unlock()
		if running {
			return p.facts(), nil
		}
	}
	if cfg.ListenAddr == "" {
		addr, err := freeAddr(d.opts.Host)
		if err != nil {
			return controlplane.Cell{}, err
		}
		cfg.ListenAddr = addr
	}
	dir := filepath.Join(d.opts.Dir, cfg.TenantID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return controlplane.Cell{}, fmt.Errorf("process: cell dir: %w", err)
	}
	p := &proc{tenantID: cfg.TenantID, cfg: cfg, fence: fence, stop: make(chan struct{}), done: make(chan struct{})}
	cmd, exited, err := d.launch(p)
	if err != nil {
		return controlplane.Cell{}, err
	}
	d.cells[cfg.TenantID] = p
	go d.monitor(p, cmd, exited)
	return p.facts(), nil
}

// launch starts the cell process of p with its current configuration and records its pid. The
// returned channel receives the process's exit error once it exits.
func (d *Driver) launch(p *proc) (*exec.Cmd, chan error, error) {
	p.mu.Lock()
	cfg := p.cfg
	p.mu.Unlock()
	logPath := filepath.Join(d.opts.Dir, cfg.TenantID, LogFileName)
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("process: cell log: %w", err)
	}
	defer logFile.Close() // the child has its own descriptor once started
	cmd := exec.Command(d.opts.Binary)
	cmd.Env = append(cfg.Environ(), d.opts.Env...)
	cmd.Dir = filepath.Dir(logPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Pdeathsig: the cell gets SIGTERM if the control plane dies. Setpgid: a Ctrl-C in the
	// terminal reaches the control plane only, which then stops cells in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true}
	writeLogLine(logFile, "process driver: starting cell", cfg.TenantID, cfg.ListenAddr)
	reply := make(chan error, 1)
	d.spawn <- spawnRequest{cmd: cmd, reply: reply}
	if err := <-reply; err != nil {
		return nil, nil, fmt.Errorf("process: start cell %s: %w", d.opts.Binary, err)
	}
	now := time.Now().UTC()
	p.mu.Lock()
	p.state, p.pid, p.startedAt = controlplane.CellRunning, cmd.Process.Pid, now
	p.mu.Unlock()
	d.log.Info("cell started", attrTenantID, cfg.TenantID, attrAddr, cfg.ListenAddr, attrPID, cmd.Process.Pid)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	return cmd, exited, nil
}

// writeLogLine appends one JSON line in the cell's own log format, so `ctl cell logs` shows
// when the driver (re)started the process.
func writeLogLine(w io.Writer, msg, tenantID, addr string) {
	line, _ := json.Marshal(map[string]string{"time": time.Now().UTC().Format(time.RFC3339Nano), "level": "INFO", "msg": msg, attrTenantID: tenantID, attrAddr: addr})
	_, _ = w.Write(append(line, '\n'))
}

// monitor waits for the cell's process to exit: after Stop it terminates it, after an unexpected
// exit it restarts it with backoff, on a new port if the old one was taken meanwhile.
func (d *Driver) monitor(p *proc, cmd *exec.Cmd, exited chan error) {
	defer close(p.done)
	backoff := d.opts.MinBackoff
	for {
		var err error
		if cmd != nil {
			select {
			case <-p.stop:
				d.terminate(p, cmd, exited)
				return
			case err = <-exited:
			}
			p.mu.Lock()
			ranFor := time.Since(p.startedAt)
			p.state, p.pid, p.lastExit = controlplane.CellRestarting, 0, exitText(err)
			p.restarts++
			p.mu.Unlock()
			if ranFor >= d.opts.StableAfter {
				backoff = d.opts.MinBackoff
			}
			d.log.Warn("cell exited; restarting", attrTenantID, p.tenantID, "exit", exitText(err), "backoff", backoff.String())
		}
		select {
		case <-p.stop:
			p.mu.Lock()
			p.state = controlplane.CellStopped
			p.mu.Unlock()
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, d.opts.MaxBackoff)
		if changed := d.ensurePort(p); changed != "" && d.opts.OnAddressChange != nil {
			d.opts.OnAddressChange(p.tenantID, changed)
		}
		cmd, exited, err = d.launch(p)
		if err != nil {
			d.log.Error("cell restart failed", attrTenantID, p.tenantID, "err", err.Error())
			p.mu.Lock()
			p.lastExit = err.Error()
			p.mu.Unlock()
			cmd = nil
		}
	}
}

// ensurePort moves p to a new free port if its current one cannot be bound, and returns the new
// address ("" if it kept its address).
func (d *Driver) ensurePort(p *proc) string {
	p.mu.Lock()
	addr := p.cfg.ListenAddr
	p.mu.Unlock()
	if l, err := net.Listen("tcp", addr); err == nil {
		l.Close()
		return ""
	}
	next, err := freeAddr(d.opts.Host)
	if err != nil {
		return ""
	}
	p.mu.Lock()
	p.cfg.ListenAddr = next
	p.mu.Unlock()
	d.log.Warn("cell port taken; moving cell", attrTenantID, p.tenantID, "from", addr, attrAddr, next)
	return next
}

// terminate sends SIGTERM, waits StopTimeout, then SIGKILL, and waits for the exit.
func (d *Driver) terminate(p *proc, cmd *exec.Cmd, exited chan error) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(d.opts.StopTimeout):
		d.log.Warn("cell ignored SIGTERM; killing it", attrTenantID, p.tenantID)
		_ = cmd.Process.Kill()
		<-exited
	}
	p.mu.Lock()
	p.state, p.pid = controlplane.CellStopped, 0
	p.mu.Unlock()
	d.log.Info("cell stopped", attrTenantID, p.tenantID)
}

func exitText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// checkFence returns a conflict *Error if ctx carries a fence lower than the highest one that
// touched p, and otherwise records ctx's fence as the highest.
func (p *proc) checkFence(ctx context.Context) error {
	fence, ok := controlplane.FenceFrom(ctx)
	if !ok {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fence > fence {
		return controlplane.Errorf(controlplane.EConflict, "the cell of %s belongs to a newer lease holder (fence %d > %d)", p.tenantID, p.fence, fence)
	}
	p.fence = fence
	return nil
}

// facts returns what the driver records about p.
func (p *proc) facts() controlplane.Cell {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := controlplane.Cell{Driver: DriverName, Address: p.cfg.ListenAddr, PID: p.pid,
		Database: p.cfg.Database, S3Prefix: p.cfg.S3Prefix}
	if !p.startedAt.IsZero() {
		at := p.startedAt
		c.StartedAt = &at
	}
	return c
}

// Stop implements controlplane.Driver: SIGTERM, then SIGKILL after Options.StopTimeout; it
// returns once the process is gone or ctx is done.
func (d *Driver) Stop(ctx context.Context, tenantID string) error {
	d.mu.Lock()
	p := d.cells[tenantID]
	d.mu.Unlock()
	if p == nil {
		return nil
	}
	if err := p.checkFence(ctx); err != nil {
		return err
	}
	p.stopOnce.Do(func() { close(p.stop) })
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("process: stopping cell of %s: %w", tenantID, ctx.Err())
	}
}

// StopAll stops every cell in parallel and waits for them (or ctx).
func (d *Driver) StopAll(ctx context.Context) {
	d.mu.Lock()
	ids := make([]string, 0, len(d.cells))
	for id := range d.cells {
		ids = append(ids, id)
	}
	d.mu.Unlock()
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = d.Stop(ctx, id)
		}()
	}
	wg.Wait()
}

// Status implements controlplane.Driver.
func (d *Driver) Status(ctx context.Context, tenantID string) (controlplane.CellStatus, error) {
	d.mu.Lock()
	p := d.cells[tenantID]
	d.mu.Unlock()
	st := controlplane.CellStatus{TenantID: tenantID, Driver: DriverName, State: controlplane.CellAbsent}
	if p == nil {
		return st, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	st.State, st.Address, st.PID, st.Restarts, st.LastExit, st.Fence = p.state, p.cfg.ListenAddr, p.pid, p.restarts, p.lastExit, p.fence
	if p.state == controlplane.CellRunning {
		at := p.startedAt
		st.StartedAt = &at
	}
	return st, nil
}

// Logs implements controlplane.Driver by reading the tail of Dir/<tenantId>/cell.log (at most
// the last 1 MiB of it). lines <= 0 means 100.
func (d *Driver) Logs(ctx context.Context, tenantID string, lines int) ([]byte, error) {
	if lines <= 0 {
		lines = 100
	}
	f, err := os.Open(filepath.Join(d.opts.Dir, tenantID, LogFileName))
	if errors.Is(err, os.ErrNotExist) {
		return []byte{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("process: cell log: %w", err)
	}
	defer f.Close()
	const window = 1 << 20
	if fi, err := f.Stat(); err == nil && fi.Size() > window {
		if _, err := f.Seek(fi.Size()-window, io.SeekStart); err != nil {
			return nil, fmt.Errorf("process: cell log: %w", err)
		}
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("process: cell log: %w", err)
	}
	all := strings.SplitAfter(string(data), "\n")
	if len(all) > 0 && all[len(all)-1] == "" {
		all = all[:len(all)-1]
	}
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return []byte(strings.Join(all, "")), nil
}

// Remove implements controlplane.Driver: it stops the cell if needed, forgets it and deletes its
// directory (logs).
func (d *Driver) Remove(ctx context.Context, tenantID string) error {
	if err := d.Stop(ctx, tenantID); err != nil {
		return err
	}
	d.mu.Lock()
	delete(d.cells, tenantID)
	d.mu.Unlock()
	if err := os.RemoveAll(filepath.Join(d.opts.Dir, tenantID)); err != nil {
		return fmt.Errorf("process: remove cell dir: %w", err)
	}
	return nil
}

// freeAddr returns "host:port" with a port that was free a moment ago.
func freeAddr(host string) (string, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", fmt.Errorf("process: free port: %w", err)
	}
	defer l.Close()
	return net.JoinHostPort(host, strconv.Itoa(l.Addr().(*net.TCPAddr).Port)), nil
}
