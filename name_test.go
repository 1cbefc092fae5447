package ferry_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/ferrydb/ferry"
)

func TestValidateName(t *testing.T) {
	deep := strings.Repeat("d/", ferry.MaxNameDepth) + "x.db"
	for _, tc := range []struct {
		name    string
		valid   bool
		tooLong bool
	}{
		{name: "tenant-1.db", valid: true},
		{name: "customer/2026/event.db", valid: true},
		{name: "café/naïve €.db", valid: true},
		{name: strings.Repeat("d/", ferry.MaxNameDepth-1) + "x.db", valid: true},
		{name: strings.Repeat("x", ferry.MaxNameLen), valid: true},
		{name: ""},
		{name: "/a.db"},
		{name: "a.db/"},
		{name: "a//b.db"},
		{name: "a/../b.db"},
		{name: "./a.db"},
		{name: "a\x01b.db"},
		{name: "tab\there"},
		{name: "del\x7f.db"},
		{name: "back\\slash"},
		{name: "bad\xff\xfe.db"},
		{name: "dir\xc3/x.db"},
		{name: "nel\u0085.db"},
		{name: "csi\u009b.db"},
		{name: strings.Repeat("x", ferry.MaxNameLen+1), tooLong: true},
		{name: deep, tooLong: true},
	} {
		err := ferry.ValidateName(tc.name)
		if tc.valid {
			if err != nil {
				t.Errorf("ValidateName(%q) = %v, want nil", tc.name, err)
			}
			continue
		}
		if !errors.Is(err, ferry.ErrInvalidName) {
			t.Errorf("ValidateName(%q) = %v, want ErrInvalidName", tc.name, err)
		}
		if got := errors.Is(err, ferry.ErrNameTooLong); got != tc.tooLong {
			t.Errorf("ValidateName(%q) = %v: too long = %v, want %v", tc.name, err, got, tc.tooLong)
		}
	}
}
