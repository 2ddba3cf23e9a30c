//! Fewer dirty runs in a per-request instance's memory, so wasmtime resets it in place.
//!
//! Dropping a per-request instance gives its pool slot back to wasmtime, which finds the
//! pages the instance dirtied with `PAGEMAP_SCAN`, copies the snapshot's bytes back over the
//! first 32 runs of them (`MAX_REGIONS` in wasmtime 48's `pagemap.rs`) and decommits
//! everything past the 32nd run, so the next instance faults those pages in again. A Go
//! snapshot's data and bss alone hold 32 runs (counted: 52 pages between 0x269000 and
//! 0x3ef000, mostly single pages a page or two apart), so every heap page a request wrote was
//! decommitted and faulted again: ~15 faults and a sixth of the request's CPU
//! (benches/README.md, "Where a per-request SDK request's time goes").
//!
//! A page stays private (and so counts as dirty, and is reset in place) once it has been
//! written, through every later reset of the slot. Writing the bytes of a gap page of one or
//! two pages back onto itself, once, merges the runs on either side: the Go hello's 32 runs
//! below its heap become 21 for 14 more pages copied per reset, which leaves room for the
//! heap's runs. Measured on the dev build (`platform-benches --profile /sdk-pr`, three
//! alternating runs): page faults from ~14,000–35,000 a second to 0, 414–474 µs a request to
//! 356–374 µs. The guest's memory does not change: every byte written is the byte read.

use std::ops::Range;

/// Runs further apart than this many pages are left apart (merging costs a page's copy per
/// reset for every gap page).
pub const MAX_GAP_PAGES: usize = 2;

/// How much of the memory, from its start, is looked at: what the engine keeps resident by
/// default ([`crate::engine::EngineSettings`]), beyond which wasmtime decommits anyway.
pub const SCAN_BYTES: usize = 8 << 20;

/// Retired per-request instances of a release between two merges: a merged page stays
/// private in its slot, so only new slots (and pages a new path writes) need it.
pub const MERGE_EVERY: u64 = 32;

const PAGE: usize = 4096;

/// The page ranges (indexes into `private`) that join runs of private pages at most
/// `max_gap` pages apart.
pub fn gaps_to_fill(private: &[bool], max_gap: usize) -> Vec<Range<usize>> {
    let mut gaps = Vec::new();
    let mut run_end: Option<usize> = None;
    let mut i = 0;
    while i < private.len() {
        if private[i] {
            if let Some(end) = run_end
                && i > end
                && i - end <= max_gap
            {
                gaps.push(end..i);
            }
            while i < private.len() && private[i] {
                i += 1;
            }
            run_end = Some(i);
        } else {
            i += 1;
        }
    }
    gaps
}

/// Merges the close dirty runs of `memory` (a per-request instance's linear memory, about
/// to be dropped). Does nothing where `/proc/self/pagemap` cannot be read or pages are not
/// 4 KiB.
pub fn merge_close_runs(memory: &mut [u8]) {
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        return;
    }
    let len = memory.len().min(SCAN_BYTES) / PAGE * PAGE;
    let Some(private) = private_pages(memory.as_ptr() as usize, len / PAGE) else {
        return;
    };
    for gap in gaps_to_fill(&private, MAX_GAP_PAGES) {
        for page in gap {
            let at = page * PAGE;
            // The same byte back: the page becomes private, its contents stay.
            memory[at] = std::hint::black_box(memory[at]);
        }
    }
}

/// For each of `pages` pages from `addr`: present and private (written since mapped)?
fn private_pages(addr: usize, pages: usize) -> Option<Vec<bool>> {
    use std::os::unix::fs::FileExt as _;
    if !addr.is_multiple_of(PAGE) {
        return None;
    }
    let file = std::fs::File::open("/proc/self/pagemap").ok()?;
    let mut entries = vec![0u8; pages * 8];
    file.read_exact_at(&mut entries, (addr / PAGE * 8) as u64)
        .ok()?;
    Some(
        entries
            .chunks_exact(8)
            .map(|e| {
                let e = u64::from_le_bytes([e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]]);
                // Bit 63: present; bit 61: file page or shared anonymous; bit 56: mapped
                // here only (a page written since mapped, not the shared zero page).
                e >> 63 & 1 == 1 && e >> 61 & 1 == 0 && e >> 56 & 1 == 1
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pages(s: &str) -> Vec<bool> {
        s.chars().map(|c| c == '#').collect()
    }

    #[test]
    fn joins_runs_at_most_max_gap_apart_and_nothing_else() {
        // Runs at 0, 2-3, 6, 10: gaps of 1, 2 and 3 pages.
        let p = pages("#.##..#...#..");
        assert_eq!(gaps_to_fill(&p, 2), vec![1..2, 4..6]);
        assert_eq!(gaps_to_fill(&p, 3), vec![1..2, 4..6, 7..10]);
        assert_eq!(gaps_to_fill(&p, 0), Vec::<Range<usize>>::new());
        // Leading and trailing clean pages are never filled.
        assert_eq!(gaps_to_fill(&pages("..#.#.."), 2), vec![3..4]);
        assert_eq!(gaps_to_fill(&pages("...."), 2), Vec::<Range<usize>>::new());
        assert_eq!(gaps_to_fill(&pages("####"), 2), Vec::<Range<usize>>::new());
    }

    #[test]
    fn merging_keeps_the_bytes_and_makes_the_gap_private() {
        // Past glibc's largest mmap threshold: a fresh mapping; untouched pages are absent
        // or the shared zero page, neither of them private.
        let mut memory = vec![0u8; 40 << 20];
        let skew = (PAGE - memory.as_ptr() as usize % PAGE) % PAGE;
        let aligned = &mut memory[skew..skew + 12 * PAGE];
        for (i, page) in [0usize, 2, 6].iter().enumerate() {
            aligned[page * PAGE + 5] = 1 + i as u8;
        }
        let before = aligned.to_vec();
        let Some(private) = private_pages(aligned.as_ptr() as usize, 12) else {
            return; // no readable pagemap here: nothing to check
        };
        assert_eq!(
            private,
            pages("#.#...#....."),
            "precondition: only the written pages are private"
        );
        merge_close_runs(aligned);
        assert_eq!(aligned, &before[..], "the bytes changed");
        let after = private_pages(aligned.as_ptr() as usize, 12).unwrap_or_default();
        assert_eq!(
            after,
            pages("###...#....."),
            "the one-page gap was not filled"
        );
    }
}
