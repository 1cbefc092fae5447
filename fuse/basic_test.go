package fuse_test

import (
	"testing"
)

func TestMountBasicDelete(t *testing.T) {
	m := mount(t, t.TempDir(), nil)
	db := openDB(t, m.path("a.db"), "delete", "full")
	mustExec(t, db, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
	for i := 0; i < 10; i++ {
		mustExec(t, db, "INSERT INTO t (v) VALUES (?)", "hello")
	}
	var n int
	if err := db.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil || n != 10 {
		t.Fatalf("count = %d, %v", n, err)
	}
	pos, err := m.store.Pos("a.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pos %s", pos)
	if pos.TXID < 11 {
		t.Fatalf("TXID = %d, want >= 11", pos.TXID)
	}
}
