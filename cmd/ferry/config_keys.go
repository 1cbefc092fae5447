package main

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// A config key is named by its path from the top of ferry.yml, as the
// README and error messages write it: "data.dir", "bucket.levels[0].level".

// defaultedKeys are the string keys whose empty value stands for a
// documented default. Numbers, durations and booleans all fall back to
// their default when zero, so they need no entry. A ${VAR} that is unset
// gives such a key its default; in any other key it is an error, since
// an empty value there silently turns something off (exec, the proxy, a
// Raft peer).
var defaultedKeys = map[string]bool{
	"fuse.dir":             true,
	"data.dir":             true,
	"log.level":            true,
	"log.format":           true,
	"bucket.type":          true,
	"bucket.path":          true,
	"bucket.bucket":        true,
	"bucket.endpoint":      true,
	"bucket.region":        true,
	"cluster.secret-env":   true,
	"lease.type":           true,
	"lease.node":           true,
	"lease.region":         true,
	"lease.status.listen":  true,
	"lease.static.primary": true,
	"lease.raft.bind":      true,
	"lease.raft.advertise": true,
	"lease.raft.dir":       true,
	"lease.s3.region":      true,
	"lease.s3.prefix":      true,
	"lease.s3.endpoint":    true,
}

var (
	durationType    = reflect.TypeFor[time.Duration]()
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
)

// unknownKeys reports every mapping key in doc that names no field of the
// config, with its full path, its line and, when one is close, the known
// key of the same section it was probably meant to be.
func unknownKeys(doc *yaml.Node) error {
	var errs []error
	walkKeys(doc, reflect.TypeFor[Config](), "", func(key *yaml.Node, section string, known []string) {
		msg := fmt.Sprintf("line %d: unknown key %s", key.Line, joinPath(section, key.Value))
		if s := suggest(key.Value, known); s != "" {
			msg += fmt.Sprintf(" (did you mean %s?)", joinPath(section, s))
		}
		errs = append(errs, errors.New(msg))
	}, nil)
	return errors.Join(errs...)
}

// unsetMarkerRef matches what unsetMarker puts in place of ${NAME}: dots
// cannot occur in a variable's name, so the marker ends unambiguously.
var unsetMarkerRef = regexp.MustCompile(`ferry\.unset\.([A-Za-z_][A-Za-z0-9_]*)\.`)

// unsetMarker stands for a reference to the unset variable name while
// the config is parsed.
func unsetMarker(name string) string { return "ferry.unset." + name + "." }

// unsetVars finds the markers of unset variables in doc. A key with a
// default that holds one is made null, so that decoding leaves the
// default in place; every other key that holds one is reported.
func unsetVars(doc *yaml.Node) error {
	var errs []error
	walkKeys(doc, reflect.TypeFor[Config](), "", nil, func(n *yaml.Node, path string, t reflect.Type) {
		var unset []string
		for _, m := range unsetMarkerRef.FindAllStringSubmatch(n.Value, -1) {
			unset = append(unset, "${"+m[1]+"}")
		}
		if len(unset) == 0 {
			return
		}
		if hasDefault(path, t) {
			n.Tag, n.Value, n.Style = "!!null", "", 0
			return
		}
		errs = append(errs, fmt.Errorf("line %d: %s: %s is not set, and %s has no default", n.Line, path, strings.Join(unset, ", "), path))
	})
	return errors.Join(errs...)
}

// hasDefault reports whether the key at path, of type t, has a default
// that an empty value stands for.
func hasDefault(path string, t reflect.Type) bool {
	if defaultedKeys[path] {
		return true
	}
	if strings.ContainsRune(path, '[') || t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType) {
		return false
	}
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int64, reflect.Uint, reflect.Uint64, reflect.Float64:
		return true
	}
	return false
}

// walkKeys follows n alongside the Go type t it decodes into. It calls
// unknown for each mapping key with no matching field (section is the
// path of the mapping it is in, known lists that section's keys), and
// leaf for each scalar value it reaches, with its key's path and type.
func walkKeys(n *yaml.Node, t reflect.Type, path string,
	unknown func(key *yaml.Node, section string, known []string),
	leaf func(value *yaml.Node, path string, t reflect.Type)) {
	for n.Kind == yaml.DocumentNode || n.Kind == yaml.AliasNode {
		if n.Kind == yaml.DocumentNode {
			if len(n.Content) == 0 {
				return
			}
			n = n.Content[0]
		} else {
			n = n.Alias
		}
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	custom := t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType)
	switch {
	case n.Kind == yaml.ScalarNode:
		if leaf != nil {
			leaf(n, path, t)
		}
	case custom || t == durationType:
		// The type reads the node itself and reports its own errors;
		// its scalars still count for ${VAR} checks.
		if leaf != nil && n.Kind == yaml.SequenceNode {
			for _, c := range n.Content {
				if c.Kind == yaml.ScalarNode {
					leaf(c, path, t)
				}
			}
		}
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct:
		fields := yamlFields(t)
		known := make([]string, 0, len(fields))
		for k := range fields {
			known = append(known, k)
		}
		sort.Strings(known)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == "<<" {
				continue // a merge key: its keys are checked where they are defined
			}
			ft, ok := fields[k.Value]
			if !ok {
				if unknown != nil {
					unknown(k, path, known)
				}
				continue
			}
			walkKeys(v, ft, joinPath(path, k.Value), unknown, leaf)
		}
	case n.Kind == yaml.SequenceNode && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array):
		for i, c := range n.Content {
			walkKeys(c, t.Elem(), path+"["+strconv.Itoa(i)+"]", unknown, leaf)
		}
	}
	// Anything else (a mapping where a scalar belongs, a map type) is
	// left to the decoder, which reports a type mismatch with its line.
}

// yamlFields maps each yaml key of struct type t to its field's type.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	fields := make(map[string]reflect.Type)
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = strings.ToLower(f.Name)
		}
		fields[name] = f.Type
	}
	return fields
}

func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// suggest returns the known key closest to key by edit distance, if it is
// close enough to be a likely typo, else "".
func suggest(key string, known []string) string {
	best, bestDist := "", -1
	for _, k := range known {
		d := editDistance(strings.ToLower(key), k)
		if bestDist < 0 || d < bestDist {
			best, bestDist = k, d
		}
	}
	if bestDist < 0 || bestDist > max(2, len(key)/3) || bestDist >= len(key) {
		return ""
	}
	return best
}

// editDistance is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and transpositions of neighbours
// each cost one, so "dri" is one edit from "dir".
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}
