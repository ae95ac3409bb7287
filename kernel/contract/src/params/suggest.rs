//! "Did you mean" hints for misspelt keys.

/// Edit distance between two short ASCII words, ignoring case: insertions,
/// deletions, substitutions and swaps of neighbours each cost 1 (optimal
/// string alignment). `None` for words longer than 64 bytes.
pub(super) fn edit_distance(a: &[u8], b: &[u8]) -> Option<usize> {
    const N: usize = 65;
    if a.len() >= N || b.len() >= N {
        return None;
    }
    let eq = |x: u8, y: u8| x.eq_ignore_ascii_case(&y);
    let (mut before, mut prev, mut cur) = ([0usize; N], [0usize; N], [0usize; N]);
    for (j, p) in prev.iter_mut().enumerate().take(b.len() + 1) {
        *p = j;
    }
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(!eq(a[i - 1], b[j - 1]));
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && eq(a[i - 1], b[j - 2]) && eq(a[i - 2], b[j - 1]) {
                d = d.min(before[j - 2] + 1);
            }
            cur[j] = d;
        }
        before = prev;
        prev = cur;
    }
    Some(prev[b.len()])
}
