//! The harness itself: what every other test relies on to run in parallel with the others.

use std::net::TcpListener;

use crate::common::*;

#[test]
fn claimed_ranges_are_distinct_held_and_released() {
    let a = Subnet::claim();
    let b = Subnet::claim();
    assert_ne!(a.octet(), b.octet());
    assert_ne!(a.octet(), 0, "127.0.0.x belongs to the embedded default");
    assert_eq!(a.ip(10).octets(), [127, 0, a.octet(), 10]);
    assert_eq!(a.range(10, 12).iter().count(), 3);
    // Another claimer (this process or another binary) cannot take a held range...
    let claim = (a.ip(1), CLAIM_PORT);
    assert!(TcpListener::bind(claim).is_err(), "{} is not held", a.ip(1));
    // ...and can once it is dropped.
    drop(a);
    assert!(TcpListener::bind(claim).is_ok());
}
