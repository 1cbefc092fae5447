package fuse

import "github.com/hanwen/go-fuse/v2/fuse"

// countingFS counts the kernel's requests by operation before handing
// them to the node file system. Requests not listed here (xattrs, links,
// ioctl, …) are rare for SQLite and pass uncounted.
type countingFS struct {
	fuse.RawFileSystem
	count func(op string)
}

func (c countingFS) Lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	c.count("lookup")
	return c.RawFileSystem.Lookup(cancel, h, name, out)
}

func (c countingFS) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	c.count("getattr")
	return c.RawFileSystem.GetAttr(cancel, in, out)
}

func (c countingFS) SetAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	c.count("setattr")
	return c.RawFileSystem.SetAttr(cancel, in, out)
}

func (c countingFS) Mkdir(cancel <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	c.count("mkdir")
	return c.RawFileSystem.Mkdir(cancel, in, name, out)
}

func (c countingFS) Unlink(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	c.count("unlink")
	return c.RawFileSystem.Unlink(cancel, h, name)
}

func (c countingFS) Rmdir(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	c.count("rmdir")
	return c.RawFileSystem.Rmdir(cancel, h, name)
}

func (c countingFS) Rename(cancel <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	c.count("rename")
	return c.RawFileSystem.Rename(cancel, in, oldName, newName)
}

func (c countingFS) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	c.count("create")
	return c.RawFileSystem.Create(cancel, in, name, out)
}

func (c countingFS) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	c.count("open")
	return c.RawFileSystem.Open(cancel, in, out)
}

func (c countingFS) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	c.count("read")
	return c.RawFileSystem.Read(cancel, in, buf)
}

func (c countingFS) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	c.count("write")
	return c.RawFileSystem.Write(cancel, in, data)
}

func (c countingFS) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	c.count("flush")
	return c.RawFileSystem.Flush(cancel, in)
}

func (c countingFS) Fsync(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	c.count("fsync")
	return c.RawFileSystem.Fsync(cancel, in)
}

func (c countingFS) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	c.count("release")
	c.RawFileSystem.Release(cancel, in)
}

func (c countingFS) GetLk(cancel <-chan struct{}, in *fuse.LkIn, out *fuse.LkOut) fuse.Status {
	c.count("getlk")
	return c.RawFileSystem.GetLk(cancel, in, out)
}

func (c countingFS) SetLk(cancel <-chan struct{}, in *fuse.LkIn) fuse.Status {
	c.count("setlk")
	return c.RawFileSystem.SetLk(cancel, in)
}

func (c countingFS) SetLkw(cancel <-chan struct{}, in *fuse.LkIn) fuse.Status {
	c.count("setlkw")
	return c.RawFileSystem.SetLkw(cancel, in)
}

func (c countingFS) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	c.count("opendir")
	return c.RawFileSystem.OpenDir(cancel, in, out)
}

func (c countingFS) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	c.count("readdirplus")
	return c.RawFileSystem.ReadDirPlus(cancel, in, out)
}

func (c countingFS) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	c.count("readdir")
	return c.RawFileSystem.ReadDir(cancel, in, out)
}

func (c countingFS) Fallocate(cancel <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	c.count("fallocate")
	return c.RawFileSystem.Fallocate(cancel, in)
}
