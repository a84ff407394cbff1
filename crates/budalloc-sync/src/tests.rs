//! Unit tests of [`Local`]'s re-entrance guard.

use crate::Local;

#[test]
fn with_refuses_reentrance() {
    let local = Local::new(5u32);
    let inner = local.with(|v| {
        *v += 1;
        local.with(|_| ())
    });
    assert_eq!(inner, Some(None), "the nested call is refused");
    assert_eq!(local.with(|v| *v), Some(6), "the flag is cleared afterwards");
}
