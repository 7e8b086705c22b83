//! Where flows come from: the kernel programs (loaded and attached by `datapath`), the ring
//! buffer they write to (`events`), the interfaces they watch (`interfaces`) and the static deny
//! list they enforce (`deny`), and the pins that let the datapath outlive the observer (`pin`).
pub mod datapath;
pub mod deny;
pub mod events;
pub mod interfaces;
pub mod pin;
