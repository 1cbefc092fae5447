package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// idleResult is the many-idle-tenants workload: how fast tenants are
// created in each place and, when the mount's process is known, what the
// mount holds once they are idle.
type idleResult struct {
	Tenants        int     `json:"tenants"`
	MountPerSec    float64 `json:"mountCreationsPerSec"`
	PlainPerSec    float64 `json:"plainCreationsPerSec"`
	Ratio          float64 `json:"creationRatio"` // mount / plain
	PID            int     `json:"pid,omitempty"`
	RSSKiB         int64   `json:"rssKiB,omitempty"`
	FDs            int     `json:"fds,omitempty"`
	Threads        int     `json:"threads,omitempty"`
	IdleSeconds    float64 `json:"idleSeconds,omitempty"`
	IdleCPUPercent float64 `json:"idleCPUPercent"` // of one core
	IdleRSSKiB     int64   `json:"idleRSSKiB,omitempty"`
	IdleFDs        int     `json:"idleFDs,omitempty"`
}

// createTenants creates n databases under dir, each in DELETE mode with a
// table and one row, closing each before the next, and returns the rate.
func createTenants(ctx context.Context, dir string, n int) (float64, error) {
	start := time.Now()
	for i := 0; i < n; i++ {
		if i%64 == 0 {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
		}
		path := filepath.Join(dir, fmt.Sprintf("tenant-%06d.db", i))
		db, err := openBenchDB(ctx, path, benchMode{Journal: "DELETE", Synchronous: "FULL"})
		if err != nil {
			return 0, err
		}
		_, err = db.ExecContext(ctx, "INSERT INTO bench (v) VALUES (zeroblob(100))")
		if cerr := db.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return 0, fmt.Errorf("tenant %d: %w", i, err)
		}
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// benchIdle creates opt.IdleTenants tenants in the mount and on plain disk,
// then, with opt.PID, reports the mount's memory, descriptors and threads,
// and its CPU use over opt.IdleWindow while every tenant is idle. The
// tenants stay in the mount when opt.KeepTenants is set, for measuring a
// restart with them.
func benchIdle(ctx context.Context, opt benchOptions, progress io.Writer) (res idleResult, err error) {
	res.Tenants = opt.IdleTenants
	var rates [2]float64
	for i, d := range []string{opt.Dir, opt.Baseline} {
		tmp, err := os.MkdirTemp(d, "ferry-bench-idle-")
		if err != nil {
			return res, fmt.Errorf("create directory: %w", err)
		}
		if i == 1 || !opt.KeepTenants {
			defer func() {
				if rerr := os.RemoveAll(tmp); rerr != nil && err == nil {
					err = fmt.Errorf("remove %s: %w", tmp, rerr)
				}
			}()
		}
		fmt.Fprintf(progress, "bench: creating %d tenants in %s\n", opt.IdleTenants, tmp)
		if rates[i], err = createTenants(ctx, tmp, opt.IdleTenants); err != nil {
			return res, err
		}
	}
	res.MountPerSec, res.PlainPerSec = rates[0], rates[1]
	res.Ratio = safeRatio(rates[0], rates[1])
	if opt.PID == 0 {
		return res, nil
	}
	res.PID = opt.PID
	if res.RSSKiB, res.FDs, res.Threads, err = procUsage(opt.PID); err != nil {
		return res, err
	}
	cpu0, err := procCPUTicks(opt.PID)
	if err != nil {
		return res, err
	}
	fmt.Fprintf(progress, "bench: watching the idle mount (pid %d) for %s\n", opt.PID, opt.IdleWindow)
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(opt.IdleWindow):
	}
	cpu1, err := procCPUTicks(opt.PID)
	if err != nil {
		return res, err
	}
	res.IdleSeconds = time.Since(t0).Seconds()
	// /proc reports CPU time in clock ticks of 1/100 s on Linux.
	res.IdleCPUPercent = float64(cpu1-cpu0) / 100 / res.IdleSeconds * 100
	res.IdleRSSKiB, res.IdleFDs, _, err = procUsage(opt.PID)
	return res, err
}

// procUsage reads a process's resident memory, open descriptors and
// threads from /proc.
func procUsage(pid int) (rssKiB int64, fds, threads int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, 0, fmt.Errorf("bench: -pid %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			rssKiB, _ = strconv.ParseInt(f[1], 10, 64)
		case "Threads:":
			threads, _ = strconv.Atoi(f[1])
		}
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, 0, 0, fmt.Errorf("bench: -pid %d: %w", pid, err)
	}
	return rssKiB, len(ents), threads, nil
}

// procCPUTicks returns a process's user and system CPU time in clock
// ticks.
func procCPUTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("bench: -pid %d: %w", pid, err)
	}
	// The command name may hold spaces; the fields after it are fixed.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("bench: -pid %d: short /proc stat", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bench: -pid %d: bad /proc stat", pid)
	}
	return utime + stime, nil
}
