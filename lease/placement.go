package lease

import (
	"fmt"
	"path"
	"slices"
)

// Placement says which nodes may hold which leases. The zero Placement lets
// every node hold every lease.
type Placement struct {
	// Candidates lists the node IDs that may hold leases. Empty means any.
	Candidates []string
	// CandidateRegions lists the regions whose nodes may hold leases. Empty
	// means any. A node qualifies when it matches either list.
	CandidateRegions []string
	// Preferred maps database-name patterns to the region their writer
	// should live in. The first matching rule wins.
	Preferred []RegionRule
}

// RegionRule prefers Region for databases whose name matches Pattern, a
// path.Match glob such as "eu/*" or "tenant-*.db".
type RegionRule struct {
	Pattern string `yaml:"pattern" json:"pattern"`
	Region  string `yaml:"region" json:"region"`
}

// Validate checks every pattern, so a typo fails at startup rather than
// silently matching nothing.
func (p Placement) Validate() error {
	for _, r := range p.Preferred {
		if _, err := path.Match(r.Pattern, ""); err != nil {
			return fmt.Errorf("preferred region pattern %q: %w", r.Pattern, err)
		}
		if r.Region == "" {
			return fmt.Errorf("preferred region pattern %q: empty region", r.Pattern)
		}
	}
	return nil
}

// Candidate reports whether node, in region, may hold leases at all.
func (p Placement) Candidate(node, region string) bool {
	if len(p.Candidates) == 0 && len(p.CandidateRegions) == 0 {
		return true
	}
	return slices.Contains(p.Candidates, node) || (region != "" && slices.Contains(p.CandidateRegions, region))
}

// PreferredRegion returns the region database name's writer should live in.
func (p Placement) PreferredRegion(name string) (string, bool) {
	for _, r := range p.Preferred {
		if ok, _ := path.Match(r.Pattern, name); ok {
			return r.Region, true
		}
	}
	return "", false
}

// Allowed reports whether node in region may take database name's lease
// now. A candidate outside the preferred region may take it only when no
// candidate of that region is present; present reports the regions of the
// live candidates (nil when unknown, which allows any candidate).
func (p Placement) Allowed(name, node, region string, present func(region string) bool) error {
	if !p.Candidate(node, region) {
		return fmt.Errorf("node %q in region %q is not a lease candidate: %w", node, region, ErrNotCandidate)
	}
	want, ok := p.PreferredRegion(name)
	if !ok || want == region || present == nil {
		return nil
	}
	if present(want) {
		return fmt.Errorf("database %q prefers region %q and a candidate there is up: %w", name, want, ErrNotCandidate)
	}
	return nil
}
