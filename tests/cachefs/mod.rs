//! A FUSE file system that models a disk with a volatile write cache, for the power-loss test.
//!
//! Everything written is visible at once, but only some of it is durable: a file's bytes and size
//! once the file is synced (`fsync`/`fdatasync`) or when written through a handle opened with
//! `O_DSYNC`/`O_SYNC`; a directory's entries (create, mkdir, rename, unlink) once the directory is
//! synced. [`CacheFs::cut_power`] freezes the disk (every later operation fails with EIO, as on a
//! dead machine); [`CacheFs::restore_durable`] then throws away everything that was not durable,
//! as the machine comes back. Files are opened `FOPEN_DIRECT_IO` and nothing is cached by the
//! kernel (zero TTLs), so a restarted process sees exactly the durable image.
//!
//! It runs in the test process on fuser's own mount code (as root: `mount(2)` on `/dev/fuse`, no
//! libfuse or fusermount needed), one thread serving requests.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
    WriteFlags,
};

const ROOT: u64 = 1;
/// Nothing is cached by the kernel: every lookup and attribute comes from the model.
const TTL: Duration = Duration::ZERO;

#[derive(Debug, Clone)]
enum Node {
    File {
        data: Vec<u8>,
        durable: Vec<u8>,
    },
    Dir {
        entries: BTreeMap<OsString, u64>,
        durable: BTreeMap<OsString, u64>,
    },
}

/// Counters of what made data durable, for the test's report.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    pub sync_writes: u64,
    pub file_syncs: u64,
    pub dir_syncs: u64,
    pub lost_bytes: u64,
}

#[derive(Debug)]
struct Model {
    nodes: BTreeMap<u64, Node>,
    next_ino: u64,
    /// Open handles: inode, and whether writes through it are durable on return.
    handles: BTreeMap<u64, (u64, bool)>,
    next_handle: u64,
    powered: bool,
    counters: Counters,
}

/// The shared model; clone it to keep it across mounts.
#[derive(Clone, Debug)]
pub struct CacheFs(Arc<Mutex<Model>>);

impl Default for CacheFs {
    fn default() -> Self {
        let root = Node::Dir {
            entries: BTreeMap::new(),
            durable: BTreeMap::new(),
        };
        CacheFs(Arc::new(Mutex::new(Model {
            nodes: BTreeMap::from([(ROOT, root)]),
            next_ino: ROOT + 1,
            handles: BTreeMap::new(),
            next_handle: 1,
            powered: true,
            counters: Counters::default(),
        })))
    }
}

/// A mounted [`CacheFs`]; unmounted when dropped.
pub struct Mounted {
    _session: BackgroundSession,
    pub path: PathBuf,
}

impl CacheFs {
    fn model(&self) -> MutexGuard<'_, Model> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Mounts the model at `path` (needs root and `/dev/fuse`).
    pub fn mount(&self, path: &Path) -> std::io::Result<Mounted> {
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("titan-cachefs".into()),
            MountOption::DefaultPermissions,
        ];
        let session = fuser::spawn_mount(self.clone(), path, &config)?;
        Ok(Mounted {
            _session: session,
            path: path.to_path_buf(),
        })
    }

    /// The power goes out: from now on every operation fails with EIO.
    pub fn cut_power(&self) {
        self.model().powered = false;
    }

    /// The power comes back: only what was durable is left.
    pub fn restore_durable(&self) {
        let mut model = self.model();
        let mut lost = 0;
        for node in model.nodes.values_mut() {
            match node {
                Node::File { data, durable } => {
                    lost += data.len().abs_diff(durable.len()) as u64;
                    *data = durable.clone();
                }
                Node::Dir { entries, durable } => *entries = durable.clone(),
            }
        }
        model.counters.lost_bytes += lost;
        // Nodes no durable entry reaches are gone.
        let mut live = vec![ROOT];
        let mut reached = std::collections::BTreeSet::new();
        while let Some(ino) = live.pop() {
            if reached.insert(ino) {
                if let Some(Node::Dir { entries, .. }) = model.nodes.get(&ino) {
                    live.extend(entries.values().copied());
                }
            }
        }
        model.nodes.retain(|ino, _| reached.contains(ino));
        model.handles.clear();
        model.powered = true;
    }

    pub fn counters(&self) -> Counters {
        self.model().counters
    }
}

fn attr(ino: u64, node: &Node) -> FileAttr {
    let (kind, size, perm, nlink) = match node {
        Node::File { data, .. } => (FileType::RegularFile, data.len() as u64, 0o644, 1),
        Node::Dir { .. } => (FileType::Directory, 4096, 0o755, 2),
    };
    let now = SystemTime::UNIX_EPOCH;
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: now,
        mtime: now,
        ctime: now,
        crtime: now,
        kind,
        perm,
        nlink,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

type Fallible<T> = Result<T, Errno>;

impl Model {
    fn check_power(&self) -> Fallible<()> {
        if self.powered {
            Ok(())
        } else {
            Err(Errno::EIO)
        }
    }

    fn node(&self, ino: u64) -> Fallible<&Node> {
        self.nodes.get(&ino).ok_or(Errno::ENOENT)
    }

    fn entries_mut(&mut self, dir: u64) -> Fallible<&mut BTreeMap<OsString, u64>> {
        match self.nodes.get_mut(&dir) {
            Some(Node::Dir { entries, .. }) => Ok(entries),
            Some(_) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn lookup(&self, parent: u64, name: &OsStr) -> Fallible<(u64, FileAttr)> {
        match self.node(parent)? {
            Node::Dir { entries, .. } => {
                let ino = *entries.get(name).ok_or(Errno::ENOENT)?;
                Ok((ino, attr(ino, self.node(ino)?)))
            }
            _ => Err(Errno::ENOTDIR),
        }
    }

    /// Adds a new node under `parent` (a visible entry, durable only once `parent` is synced).
    fn insert(&mut self, parent: u64, name: &OsStr, node: Node) -> Fallible<(u64, FileAttr)> {
        self.check_power()?;
        if self.entries_mut(parent)?.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let attr = attr(ino, &node);
        self.nodes.insert(ino, node);
        self.entries_mut(parent)?.insert(name.to_owned(), ino);
        Ok((ino, attr))
    }

    fn open(&mut self, ino: u64, flags: i32) -> Fallible<u64> {
        self.check_power()?;
        self.node(ino)?;
        let sync = flags & (nix::libc::O_DSYNC | nix::libc::O_SYNC) != 0;
        let fh = self.next_handle;
        self.next_handle += 1;
        self.handles.insert(fh, (ino, sync));
        Ok(fh)
    }

    fn write(&mut self, fh: u64, offset: u64, bytes: &[u8]) -> Fallible<u32> {
        self.check_power()?;
        let (ino, sync) = *self.handles.get(&fh).ok_or(Errno::EBADF)?;
        let Some(Node::File { data, durable }) = self.nodes.get_mut(&ino) else {
            return Err(Errno::EISDIR);
        };
        let (at, end) = (offset as usize, offset as usize + bytes.len());
        for image in std::iter::once(data).chain(sync.then_some(durable)) {
            if image.len() < end {
                image.resize(end, 0);
            }
            image[at..end].copy_from_slice(bytes);
        }
        self.counters.sync_writes += u64::from(sync);
        Ok(bytes.len() as u32)
    }

    fn sync(&mut self, ino: u64) -> Fallible<()> {
        self.check_power()?;
        match self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)? {
            Node::File { data, durable } => {
                *durable = data.clone();
                self.counters.file_syncs += 1;
            }
            Node::Dir { entries, durable } => {
                *durable = entries.clone();
                self.counters.dir_syncs += 1;
            }
        }
        Ok(())
    }

    fn remove(&mut self, parent: u64, name: &OsStr, dir: bool) -> Fallible<()> {
        self.check_power()?;
        let (ino, _) = self.lookup(parent, name)?;
        match (self.node(ino)?, dir) {
            (Node::Dir { entries, .. }, true) if !entries.is_empty() => {
                return Err(Errno::ENOTEMPTY)
            }
            (Node::Dir { .. }, false) => return Err(Errno::EISDIR),
            (Node::File { .. }, true) => return Err(Errno::ENOTDIR),
            _ => {}
        }
        // The node itself stays until a power cut finds nothing durable referring to it.
        self.entries_mut(parent)?.remove(name);
        Ok(())
    }

    fn rename(&mut self, from: (u64, &OsStr), to: (u64, &OsStr), flags: u32) -> Fallible<()> {
        self.check_power()?;
        let (ino, _) = self.lookup(from.0, from.1)?;
        let exists = self.entries_mut(to.0)?.contains_key(to.1);
        if exists && flags & nix::libc::RENAME_NOREPLACE != 0 {
            return Err(Errno::EEXIST);
        }
        self.entries_mut(from.0)?.remove(from.1);
        self.entries_mut(to.0)?.insert(to.1.to_owned(), ino);
        Ok(())
    }
}

/// Sends a result as a reply, or its error.
macro_rules! answer {
    ($reply:expr, $result:expr, |$v:pat_param| $ok:expr) => {
        match $result {
            Ok($v) => $ok,
            Err(e) => $reply.error(e),
        }
    };
}

impl Filesystem for CacheFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let result = self.model().lookup(parent.0, name);
        answer!(reply, result, |(_, a)| reply.entry(&TTL, &a, Generation(0)));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let model = self.model();
        answer!(reply, model.node(ino.0), |n| reply
            .attr(&TTL, &attr(ino.0, n)));
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut model = self.model();
        let result = model.check_power().and_then(|()| {
            if let (Some(len), Some(Node::File { data, .. })) = (size, model.nodes.get_mut(&ino.0))
            {
                data.resize(len as usize, 0);
            }
            model.node(ino.0).map(|n| attr(ino.0, n))
        });
        answer!(reply, result, |a| reply.attr(&TTL, &a));
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let dir = Node::Dir {
            entries: BTreeMap::new(),
            durable: BTreeMap::new(),
        };
        let result = self.model().insert(parent.0, name, dir);
        answer!(reply, result, |(_, a)| reply.entry(&TTL, &a, Generation(0)));
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut model = self.model();
        let file = Node::File {
            data: Vec::new(),
            durable: Vec::new(),
        };
        let result = model
            .insert(parent.0, name, file)
            .and_then(|(ino, a)| Ok((model.open(ino, flags)?, a)));
        answer!(reply, result, |(fh, a)| reply.created(
            &TTL,
            &a,
            Generation(0),
            FileHandle(fh),
            FopenFlags::FOPEN_DIRECT_IO
        ));
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut model = self.model();
        let result = model.open(ino.0, flags.0);
        if result.is_ok() && flags.0 & nix::libc::O_TRUNC != 0 {
            if let Some(Node::File { data, .. }) = model.nodes.get_mut(&ino.0) {
                data.clear();
            }
        }
        answer!(reply, result, |fh| reply
            .opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO));
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        let model = self.model();
        let result = model.check_power().and_then(|()| match model.node(ino.0)? {
            Node::File { data, .. } => {
                let from = (offset as usize).min(data.len());
                let to = (from + size as usize).min(data.len());
                Ok(&data[from..to])
            }
            Node::Dir { .. } => Err(Errno::EISDIR),
        });
        answer!(reply, result, |bytes| reply.data(bytes));
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        let result = self.model().write(fh.0, offset, data);
        answer!(reply, result, |n| reply.written(n));
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.model().handles.remove(&fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let result = self.model().sync(ino.0);
        answer!(reply, result, |()| reply.ok());
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let result = self.model().sync(ino.0);
        answer!(reply, result, |()| reply.ok());
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let result = self.model().remove(parent.0, name, false);
        answer!(reply, result, |()| reply.ok());
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let result = self.model().remove(parent.0, name, true);
        answer!(reply, result, |()| reply.ok());
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let result = self
            .model()
            .rename((parent.0, name), (newparent.0, newname), flags.bits());
        answer!(reply, result, |()| reply.ok());
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let model = self.model();
        let entries = match model.node(ino.0) {
            Ok(Node::Dir { entries, .. }) => entries,
            Ok(_) => return reply.error(Errno::ENOTDIR),
            Err(e) => return reply.error(e),
        };
        let mut listing = vec![
            (ino.0, FileType::Directory, OsString::from(".")),
            (ROOT, FileType::Directory, OsString::from("..")),
        ];
        for (name, &child) in entries {
            let kind = match model.nodes.get(&child) {
                Some(Node::Dir { .. }) => FileType::Directory,
                _ => FileType::RegularFile,
            };
            listing.push((child, kind, name.clone()));
        }
        for (i, (child, kind, name)) in listing.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(1 << 24, 1 << 23, 1 << 23, 1 << 20, 1 << 19, 4096, 255, 4096);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }
}
