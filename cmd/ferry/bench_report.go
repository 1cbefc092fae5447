package main

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// benchResult is one mode measured in one place.
type benchResult struct {
	Journal      string  `json:"journalMode"`
	Synchronous  string  `json:"synchronous"`
	Place        string  `json:"place"` // "mount" or "plain"
	Dir          string  `json:"dir"`
	Writes       int     `json:"writes"`
	WriteSeconds float64 `json:"writeSeconds"`
	WritesPerSec float64 `json:"writesPerSec"`
	P50Micros    float64 `json:"commitP50Micros"`
	P99Micros    float64 `json:"commitP99Micros"`
	Reads        int     `json:"reads"`
	ReadSeconds  float64 `json:"readSeconds"`
	ReadsPerSec  float64 `json:"readsPerSec"`
}

// benchRatio compares one mode in the mount with the same mode on plain
// disk. Throughput ratios above 1 mean the mount is faster; latency ratios
// above 1 mean the mount is slower.
type benchRatio struct {
	Journal     string  `json:"journalMode"`
	Synchronous string  `json:"synchronous"`
	Writes      float64 `json:"writesPerSec"`
	P50         float64 `json:"commitP50"`
	P99         float64 `json:"commitP99"`
	Reads       float64 `json:"readsPerSec"`
}

// benchReport is the output of 'ferry bench'.
type benchReport struct {
	Duration string        `json:"phaseDuration"`
	Results  []benchResult `json:"results"`
	Ratios   []benchRatio  `json:"ratios"` // mount / plain
}

func ratioOf(mount, plain benchResult) benchRatio {
	return benchRatio{
		Journal:     mount.Journal,
		Synchronous: mount.Synchronous,
		Writes:      safeRatio(mount.WritesPerSec, plain.WritesPerSec),
		P50:         safeRatio(mount.P50Micros, plain.P50Micros),
		P99:         safeRatio(mount.P99Micros, plain.P99Micros),
		Reads:       safeRatio(mount.ReadsPerSec, plain.ReadsPerSec),
	}
}

// safeRatio is a/b, or 0 when b is 0 (which JSON cannot hold as infinity).
func safeRatio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// WriteTable prints the report as an aligned table, each mode's mount and
// plain rows followed by their ratio.
func (r *benchReport) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tplace\twrites/s\tcommit p50\tcommit p99\treads/s\t")
	for i, ratio := range r.Ratios {
		mode := benchMode{Journal: ratio.Journal, Synchronous: ratio.Synchronous}.String()
		for _, res := range r.Results[2*i : 2*i+2] {
			fmt.Fprintf(tw, "%s\t%s\t%.0f\t%s\t%s\t%.0f\t\n", mode, res.Place,
				res.WritesPerSec, fmtMicros(res.P50Micros), fmtMicros(res.P99Micros), res.ReadsPerSec)
		}
		fmt.Fprintf(tw, "%s\t%s\t%.3fx\t%.2fx\t%.2fx\t%.3fx\t\n", mode, "mount/plain",
			ratio.Writes, ratio.P50, ratio.P99, ratio.Reads)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "each phase ran for up to %s; latency ratios above 1x mean the mount is slower\n", r.Duration)
	return err
}

func fmtMicros(us float64) string {
	if us >= 1000 {
		return fmt.Sprintf("%.2fms", us/1000)
	}
	return fmt.Sprintf("%.1fµs", us)
}
