package process_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"atende/cell"
	"atende/controlplane"
	"atende/controlplane/process"
	"atende/controlplane/process/processtest"
)

// fakeBin is the fake cell (testdata/fakecell) compiled by TestMain.
var fakeBin string

func TestMain(m *testing.M) {
	bin, cleanup, err := processtest.BuildFakeCell()
	if err != nil {
		panic(err)
	}
	fakeBin = bin
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// healthPID polls GET /healthz on addr until it answers 200 (or 10 s pass) and returns the pid in
// the body.
func healthPID(t *testing.T, addr func() string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr() + "/healthz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				pid, _ := strconv.Atoi(string(body))
				return pid
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("cell at %s never became healthy", addr())
	return 0
}

func newDriver(t *testing.T, opts process.Options) *process.Driver {
	t.Helper()
	opts.Binary = fakeBin
	opts.Dir = t.TempDir()
	d, err := process.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.StopAll(context.Background()) })
	return d
}

func status(t *testing.T, d *process.Driver, id string) controlplane.CellStatus {
	t.Helper()
	st, err := d.Status(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestDriverRestartsAKilledCell(t *testing.T) {
	d := newDriver(t, process.Options{})
	ctx := context.Background()
	id := controlplane.NewTenantID()
	c, err := d.Start(ctx, cell.Config{TenantID: id, Database: "t_" + id})
	if err != nil {
		t.Fatal(err)
	}
	if c.Driver != process.DriverName || c.Address == "" || c.PID == 0 || c.Database != "t_"+id {
		t.Fatalf("facts %+v", c)
	}
	addr := func() string { return status(t, d, id).Address }
	pid := healthPID(t, addr)
	if pid != c.PID {
		t.Fatalf("healthz pid %d, driver pid %d", pid, c.PID)
	}
	again, err := d.Start(ctx, cell.Config{TenantID: id})
	if err != nil || again.PID != c.PID {
		t.Fatalf("second Start launched another process: %+v, %v", again, err)
	}

	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := status(t, d, id)
		if st.State == controlplane.CellRunning && st.PID != 0 && st.PID != pid {
			if st.Restarts != 1 || !strings.Contains(st.LastExit, "killed") {
				t.Fatalf("status after restart %+v", st)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cell not restarted: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if newPID := healthPID(t, addr); newPID == pid {
		t.Fatal("old process still answers")
	}
	logs, err := d.Logs(ctx, id, 2)
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(string(logs)), "\n"); len(lines) != 2 || !strings.Contains(string(logs), "fakecell: listening on") {
		t.Fatalf("logs tail: %q", logs)
	}

	if err := d.Stop(ctx, id); err != nil {
		t.Fatal(err)
	}
	if st := status(t, d, id); st.State != controlplane.CellStopped || st.PID != 0 {
		t.Fatalf("after Stop: %+v", st)
	}
	if _, err := http.Get("http://" + c.Address + "/healthz"); err == nil {
		t.Fatal("stopped cell still answers")
	}
	if err := d.Remove(ctx, id); err != nil {
		t.Fatal(err)
	}
	if st := status(t, d, id); st.State != controlplane.CellAbsent {
		t.Fatalf("after Remove: %+v", st)
	}
}

func TestDriverMovesACellWhosePortIsTaken(t *testing.T) {
	moved := make(chan string, 1)
	d := newDriver(t, process.Options{MinBackoff: 300 * time.Millisecond, OnAddressChange: func(id, addr string) { moved <- addr }})
	ctx := context.Background()
	id := controlplane.NewTenantID()
	c, err := d.Start(ctx, cell.Config{TenantID: id})
	if err != nil {
		t.Fatal(err)
	}
	pid := healthPID(t, func() string { return c.Address })
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Take the cell's port as soon as the dead process releases it, before the restart.
	var squatter net.Listener
	deadline := time.Now().Add(250 * time.Millisecond)
	for squatter == nil && time.Now().Before(deadline) {
		squatter, _ = net.Listen("tcp", c.Address)
		time.Sleep(time.Millisecond)
	}
	if squatter == nil {
		t.Fatal("could not take the cell's port")
	}
	defer squatter.Close()
	select {
	case addr := <-moved:
		if addr == c.Address {
			t.Fatalf("moved to the same address %s", addr)
		}
		healthPID(t, func() string { return addr })
		if st := status(t, d, id); st.Address != addr {
			t.Fatalf("status address %s, want %s", st.Address, addr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no address change reported")
	}
}

func TestDriverKillsACellThatIgnoresSIGTERM(t *testing.T) {
	d := newDriver(t, process.Options{StopTimeout: 300 * time.Millisecond, Env: []string{"FAKECELL_IGNORE_TERM=1"}})
	ctx := context.Background()
	id := controlplane.NewTenantID()
	c, err := d.Start(ctx, cell.Config{TenantID: id})
	if err != nil {
		t.Fatal(err)
	}
	healthPID(t, func() string { return c.Address })
	start := time.Now()
	if err := d.Stop(ctx, id); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 300*time.Millisecond || took > 3*time.Second {
		t.Fatalf("Stop took %s, want about the 300ms stop timeout", took)
	}
	if err := syscall.Kill(c.PID, 0); err == nil {
		t.Fatal("process still exists after Stop")
	}
}

func TestStartFailsForAMissingBinary(t *testing.T) {
	d, err := process.New(process.Options{Binary: filepath.Join(t.TempDir(), "nope"), Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Start(context.Background(), cell.Config{TenantID: "x"}); err == nil {
		t.Fatal("Start of a missing binary succeeded")
	}
	if st := status(t, d, "x"); st.State != controlplane.CellAbsent {
		t.Fatalf("status %+v", st)
	}
}
