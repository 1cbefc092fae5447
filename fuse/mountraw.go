package fuse

import (
	"os"
	"strconv"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// mountNodes mounts root as fs.Mount does, with requests counted when
// opts.CountOp is set.
func mountNodes(opts Options, root fs.InodeEmbedder, mopts *fs.Options) (*fuse.Server, error) {
	server, err := mountRaw(opts, root, mopts)
	if err == nil {
		// go-fuse leaves the device of a direct mount open across exec:
		// the application Ferry starts would inherit it, and, outliving a
		// killed Ferry, keep the mount's connection alive and hang on its
		// own requests to it.
		closeOnExecFUSE()
	}
	return server, err
}

// closeOnExecFUSE marks every open /dev/fuse descriptor close-on-exec.
func closeOnExecFUSE() {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 {
			continue
		}
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && target == "/dev/fuse" {
			syscall.CloseOnExec(fd)
		}
	}
}

func mountRaw(opts Options, root fs.InodeEmbedder, mopts *fs.Options) (*fuse.Server, error) {
	if opts.CountOp == nil {
		return fs.Mount(opts.Dir, root, mopts)
	}
	raw := countingFS{RawFileSystem: fs.NewNodeFS(root, mopts), count: opts.CountOp}
	server, err := fuse.NewServer(raw, opts.Dir, &mopts.MountOptions)
	if err != nil {
		return nil, err
	}
	go server.Serve()
	if err := server.WaitMount(); err != nil {
		return nil, err
	}
	return server, nil
}
