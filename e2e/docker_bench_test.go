package e2e

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkTenantLiveDocker measures, with the docker driver against the real engine, the time
// from the API's 202 to the first 200 on the tenant's host through the edge: 5 shared-tier
// tenants, then 3 dedicated ones (their own network, database server container and bucket),
// created one after another. Goal (issue 5): at most 5 s.
func BenchmarkTenantLiveDocker(b *testing.B) {
	r := newDockerRig(b)
	for range b.N {
		s := startStack(b, r.env()...)
		for _, tier := range []struct {
			name string
			n    int
		}{{"shared", 5}, {"dedicated", 3}} {
			var took []time.Duration
			for i := 0; i < tier.n; i++ {
				_, d := s.createTiered(r, fmt.Sprintf("%s%02d", tier.name[:3], i), tier.name)
				took = append(took, d)
			}
			sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
			b.ReportMetric(ms(percentile(took, 50)), tier.name+"-p50-ms")
			b.ReportMetric(ms(took[len(took)-1]), tier.name+"-max-ms")
			b.Logf("%s tier, docker driver: 202 → first 200 on the host: %v", tier.name, took)
		}
		s.stop()
	}
}

// BenchmarkFiftyTenantsDocker creates 50 shared-tier tenants (ATENDE_BENCH_DOCKER_TENANTS
// overrides the number) in a row with the docker driver
// (each waited for, as `ctl tenant create` does, until its host answers 200 through the edge)
// and reports the total time and the control plane's resident memory (VmRSS of the process,
// embedded FerretDB and versitygw included; not the cells, which are containers) before the
// first creation and after the last, and its peak (VmHWM).
func BenchmarkFiftyTenantsDocker(b *testing.B) {
	r := newDockerRig(b)
	for range b.N {
		s := startStack(b, r.env()...)
		pid := s.cmd.Process.Pid
		before := procStatusKiB(b, pid, "VmRSS")
		began := time.Now()
		var slowest time.Duration
		n := 50
		if v, err := strconv.Atoi(os.Getenv("ATENDE_BENCH_DOCKER_TENANTS")); err == nil && v > 0 {
			n = v
		}
		for i := 0; i < n; i++ {
			_, d := s.createTiered(r, fmt.Sprintf("fifty%02d", i), "shared")
			slowest = max(slowest, d)
		}
		total := time.Since(began)
		after, peak := procStatusKiB(b, pid, "VmRSS"), procStatusKiB(b, pid, "VmHWM")
		b.ReportMetric(total.Seconds(), "total-s")
		b.ReportMetric(ms(slowest), "slowest-ms")
		b.ReportMetric(float64(before)/1024, "cp-rss-before-MiB")
		b.ReportMetric(float64(after)/1024, "cp-rss-after-MiB")
		b.ReportMetric(float64(peak)/1024, "cp-rss-peak-MiB")
		b.Logf("%d tenants (docker driver) in %v; slowest 202 → 200 %v; control-plane RSS %d → %d KiB (peak %d KiB)",
			n, total, slowest, before, after, peak)
		s.stop()
	}
}

// procStatusKiB returns the field (e.g. "VmRSS") of /proc/<pid>/status, in KiB.
func procStatusKiB(tb testing.TB, pid int, field string) int {
	tb.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field+":" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	tb.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
