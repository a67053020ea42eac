//go:build unix

package main

import (
	"os"
	"syscall"
	"testing"
)

// ownerOf returns the uid and gid of path (following symlinks).
func ownerOf(t *testing.T, path string) (int, int) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return int(st.Uid), int(st.Gid)
}
