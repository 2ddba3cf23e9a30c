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
//! written, through every later reset of the slot. Writing the bytes of a gap page back onto
//! itself, once, merges the runs on either side. So every 32nd retirement of a release's
//! instance reads the memory's pagemap and fills the smallest gaps until at most
//! [`RUN_BUDGET`] runs are left (at most [`MAX_FILL_PAGES`] pages, each copied on every later
//! reset). Counted over the whole memory (release build): the Go hello's 40 runs (62 dirty
//! pages) become 24 for 24 pages filled; the JSON example's 47 runs become 24 for 51. The
//! first version of this merge filled only gaps of one or two pages in the first 8 MiB;
//! the JSON example's heap runs lie past 8 MiB (where wasmtime's scan counts them all the
//! same) and it still took ~4 faults a request: now 0, and a request 311 → 264 µs
//! (`platform-benches --profile /todos --profile-host per-request.local`, release build).
//! The hello had 0 faults with either version (143 → 135 µs, within noise). The guest's
//! memory does not change: every byte written is the byte read.

use std::ops::Range;

/// Runs the merge leaves at most: wasmtime 48 resets 32 in place (`MAX_REGIONS`); the rest
/// is room for runs a later request writes that this one did not (another path, a bigger
/// body).
pub const RUN_BUDGET: usize = 24;

/// Pages a merge fills at most: each is copied back on every later reset of the slot
/// (~0.2 µs: 15 µs for ~86 pages in the release profile), where a page decommitted past the
/// 32nd run costs a fault (~3–4 µs in the dev-build profile) only when a request writes it
/// again.
pub const MAX_FILL_PAGES: usize = 64;

/// Retired per-request instances of a release between two merges: a merged page stays
/// private in its slot, so only new slots (and pages a new path writes) need it.
pub const MERGE_EVERY: u64 = 32;

const PAGE: usize = 4096;

/// The page ranges (indexes into `private`) to make private so that its runs of private
/// pages number at most `budget`: the smallest gaps first (the fewest pages copied per
/// run saved), no more than `max_fill` pages in all. Nothing when the runs already fit;
/// where the cap stops short of the budget, the smallest gaps that fit under it.
pub fn gaps_to_fill(private: &[bool], budget: usize, max_fill: usize) -> Vec<Range<usize>> {
    let mut gaps = Vec::new();
    let mut run_end: Option<usize> = None;
    let mut runs = 0usize;
    let mut i = 0;
    while i < private.len() {
        if private[i] {
            runs += 1;
            if let Some(end) = run_end {
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
    // Smallest first; ties by address, so the choice is stable.
    gaps.sort_by_key(|g| (g.len(), g.start));
    let mut chosen = Vec::new();
    let mut filled = 0;
    for gap in gaps {
        if runs <= budget || filled + gap.len() > max_fill {
            break;
        }
        filled += gap.len();
        runs -= 1;
        chosen.push(gap);
    }
    chosen.sort_by_key(|g| g.start);
    chosen
}

/// Merges the close dirty runs of `memory` (a per-request instance's linear memory, about
/// to be dropped). `keep_resident` is the engine's
/// ([`crate::engine::EngineSettings::keep_resident`]): wasmtime resets in place at most that
/// many bytes of dirty pages, so the merge never takes the dirty pages past it. Does
/// nothing where `/proc/self/pagemap` cannot be read or pages are not 4 KiB.
pub fn merge_close_runs(memory: &mut [u8], keep_resident: usize) {
    merge_runs(memory, keep_resident, RUN_BUDGET, MAX_FILL_PAGES);
}

/// Most of a memory looked at (its pagemap is read in one go: 8 bytes a page).
const SCAN_LIMIT: usize = 256 << 20;

fn merge_runs(memory: &mut [u8], keep_resident: usize, budget: usize, max_fill: usize) {
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        return;
    }
    // The whole memory: wasmtime's scan counts runs (and resets them in place) anywhere in
    // it, so runs past any bound of ours would still take its 32 places.
    let len = memory.len().min(SCAN_LIMIT) / PAGE * PAGE;
    let Some(private) = private_pages(memory.as_ptr() as usize, len / PAGE) else {
        return;
    };
    let dirty = private.iter().filter(|p| **p).count();
    let room = (keep_resident / PAGE).saturating_sub(dirty);
    let chosen = gaps_to_fill(&private, budget, max_fill.min(room));
    for gap in chosen {
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
    fn fills_the_smallest_gaps_until_the_runs_fit_the_budget() {
        // Runs at 0, 2-3, 6, 10: gaps of 1, 2 and 3 pages, four runs.
        let p = pages("#.##..#...#..");
        assert_eq!(gaps_to_fill(&p, 4, 64), Vec::<Range<usize>>::new());
        assert_eq!(gaps_to_fill(&p, 3, 64), vec![1..2]);
        assert_eq!(gaps_to_fill(&p, 2, 64), vec![1..2, 4..6]);
        assert_eq!(gaps_to_fill(&p, 1, 64), vec![1..2, 4..6, 7..10]);
        assert_eq!(gaps_to_fill(&p, 0, 64), vec![1..2, 4..6, 7..10]);
        // The cap on filled pages holds, smallest gaps still first.
        assert_eq!(gaps_to_fill(&p, 1, 3), vec![1..2, 4..6]);
        assert_eq!(gaps_to_fill(&p, 1, 2), vec![1..2]);
        // Smaller gaps win over earlier ones.
        assert_eq!(gaps_to_fill(&pages("#...#.#"), 2, 64), vec![5..6]);
        // Leading and trailing clean pages are never filled.
        assert_eq!(gaps_to_fill(&pages("..#.#.."), 1, 64), vec![3..4]);
        assert_eq!(
            gaps_to_fill(&pages("...."), 0, 64),
            Vec::<Range<usize>>::new()
        );
        assert_eq!(
            gaps_to_fill(&pages("####"), 0, 64),
            Vec::<Range<usize>>::new()
        );
    }

    #[test]
    fn merging_keeps_the_bytes_and_makes_the_gap_private() {
        // Past glibc's largest mmap threshold: a fresh mapping; untouched pages are absent
        // or the shared zero page, neither of them private.
        let mut memory = vec![0u8; 40 << 20];
        let skew = (PAGE - memory.as_ptr() as usize % PAGE) % PAGE;
        let aligned = &mut memory[skew..skew + 12 * PAGE];
        for (i, page) in [0usize, 2, 6, 9].iter().enumerate() {
            aligned[page * PAGE + 5] = 1 + i as u8;
        }
        let before = aligned.to_vec();
        let Some(private) = private_pages(aligned.as_ptr() as usize, 12) else {
            return; // no readable pagemap here: nothing to check
        };
        assert_eq!(
            private,
            pages("#.#...#..#.."),
            "precondition: only the written pages are private"
        );
        // Four runs, two allowed, but room for one more dirty page only (5 kept
        // resident): the one-page gap alone is filled.
        merge_runs(aligned, 5 * PAGE, 2, 64);
        assert_eq!(aligned, &before[..], "the bytes changed");
        let after = private_pages(aligned.as_ptr() as usize, 12).unwrap_or_default();
        assert_eq!(
            after,
            pages("###...#..#.."),
            "the one-page gap was not filled, or more than the resident bound was"
        );
        // Room enough: three runs (0-2, 6, 9), two allowed; the two-page gap is the smaller.
        merge_runs(aligned, 12 * PAGE, 2, 64);
        assert_eq!(aligned, &before[..], "the bytes changed");
        let after = private_pages(aligned.as_ptr() as usize, 12).unwrap_or_default();
        assert_eq!(
            after,
            pages("###...####.."),
            "the two-page gap was not filled, or the three-page one was"
        );
    }
}
