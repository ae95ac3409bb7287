//! A file as the source of a file mapping (`vm::MapSource`): faults read
//! the page through the cache, write faults dirty it after waiting for
//! stable data, and writeback cleans the mappings the file keeps.

use alloc::{sync::Arc, vec::Vec};
use core::sync::atomic::Ordering;

use super::file::{File, FsError};
use crate::{
    mm::Frame,
    pagelock::table,
    vm::{MapSource, Mapping, VmError},
};

/// A file can be mapped into address spaces (`vm::AddressSpace::map_file`).
impl MapSource for File {
    fn read_page(&self, index: u64) -> Result<Frame, VmError> {
        File::read_page(self, index).map_err(|e| match e {
            FsError::NoMemory => VmError::OutOfMemory,
            _ => VmError::Io { index },
        })
    }

    /// The page is locked by the VM (see `MapSource`): wait for stable
    /// data (the mapping was write-protected when writeback started, which
    /// is why this write faulted), then dirty it. The page cannot go under
    /// writeback again before the VM unlocks it, after the entry is
    /// writable.
    fn page_mkwrite(&self, index: u64, page: &Frame) -> Result<(), VmError> {
        if !self.owns(page, index) {
            return Err(VmError::Retry);
        }
        table().wait_for_stable_page(page);
        self.mark_dirty(index, page);
        Ok(())
    }

    fn mapped(&self, m: Mapping) {
        let mut list = self.mappings.lock();
        let mut new = Vec::clone(&list);
        new.push(m);
        // Relaxed: see `File::nr_mappings`.
        self.nr_mappings.store(new.len() as u64, Ordering::Relaxed);
        *list = Arc::new(new);
    }

    fn unmapped(&self, m: &Mapping) {
        let mut list = self.mappings.lock();
        let new: Vec<Mapping> = list.iter().filter(|x| *x != m).cloned().collect();
        self.nr_mappings.store(new.len() as u64, Ordering::Relaxed);
        *list = Arc::new(new);
    }
}
