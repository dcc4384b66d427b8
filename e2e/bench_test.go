package e2e

import (
	"bytes"

	"atende/cell/web"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// percentile returns the p-th percentile (0–100, nearest rank) of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BenchmarkTenantLive measures the seconds from the API's 202 to the first 200 on the tenant's
// host (process driver), over 10 tenants created one after another.
func BenchmarkTenantLive(b *testing.B) {
	for range b.N {
		s := startStack(b, "ATENDE_SEED_DEV=false")
		var took []time.Duration
		for i := 0; i < 10; i++ {
			_, d := s.createTenant(fmt.Sprintf("bench%02d", i))
			took = append(took, d)
		}
		sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
		b.ReportMetric(ms(percentile(took, 50)), "create-p50-ms")
		b.ReportMetric(ms(took[len(took)-1]), "create-max-ms")
		s.stop()
	}
}

// BenchmarkMessageLatency sends 1,000 visitor messages over WebSocket through the edge, one
// after another (each sent once the previous one reached the agent, paced under the
// per-connection frame rate), and measures for each the time from the visitor's send to the
// agent's socket receiving it.
func BenchmarkMessageLatency(b *testing.B) {
	for range b.N {
		s := startStack(b, "ATENDE_SEED_DEV=false")
		acme, _ := s.createTenant("acme")
		admin := s.login("acme", acme.Admin.Email, acme.Admin.Password)
		visitorTok, c := s.visitor("acme", "hi")
		if st, body := s.on("acme", "POST", "/api/chat/"+c.ID+"/accept", admin.AccessToken, nil, nil); st != 200 {
			b.Fatalf("accept: %d %s", st, body)
		}
		agent, visitor := s.dial("acme", admin.AccessToken), s.dial("acme", visitorTok)
		agent.send(map[string]any{"type": "join-chat", "chatId": c.ID})
		agent.next("joined", 5*time.Second)
		const n = 1000
		lat := make([]time.Duration, 0, n)
		start := time.Now()
		pace := time.NewTicker(time.Second / (web.FrameRate - 5)) // stay under the frame rate limit
		defer pace.Stop()
		for i := 0; i < n; i++ {
			<-pace.C
			sent := time.Now()
			visitor.send(map[string]any{"type": "send-message", "chatId": c.ID, "body": fmt.Sprint("m", i), "clientMsgId": fmt.Sprint("m-", i)})
			for {
				f := agent.next("message", 10*time.Second)
				if f.Seq == int64(i+2) { // seq 1 is the first message
					lat = append(lat, f.At.Sub(sent))
					break
				}
			}
		}
		elapsed := time.Since(start)
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		b.ReportMetric(ms(percentile(lat, 50)), "p50-ms")
		b.ReportMetric(ms(percentile(lat, 99)), "p99-ms")
		b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
		b.ReportMetric(float64(n)/elapsed.Seconds(), "msgs/s")
		s.stop()
	}
}

// BenchmarkCellIdleRSS reports the resident memory of one idle cell process (after start, one
// login and 3 s of idling), read from /proc/<pid>/status.
func BenchmarkCellIdleRSS(b *testing.B) {
	for range b.N {
		s := startStack(b, "ATENDE_SEED_DEV=false")
		acme, _ := s.createTenant("acme")
		s.login("acme", acme.Admin.Email, acme.Admin.Password)
		time.Sleep(3 * time.Second)
		pid := cellPID(b, acme.ID)
		b.ReportMetric(float64(rssKiB(b, pid))/1024, "cell-idle-rss-MiB")
		b.ReportMetric(float64(rssKiB(b, s.cmd.Process.Pid))/1024, "controlplane-rss-MiB")
		s.stop()
	}
}

// cellPID finds the cell process serving tenantID by its environment.
func cellPID(tb testing.TB, tenantID string) int {
	tb.Helper()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err == nil && bytes.Contains(env, []byte("ATENDE_CELL_TENANT_ID="+tenantID+"\x00")) {
			return pid
		}
	}
	tb.Fatalf("no cell process for tenant %s", tenantID)
	return 0
}

func rssKiB(tb testing.TB, pid int) int {
	tb.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	tb.Fatal("no VmRSS")
	return 0
}
