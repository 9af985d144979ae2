//! Typed entity ids. Their `Display` is the text syntax (`v3`, `n7`, `c2`).

use cranelift_entity::entity_impl;

/// A tensor value: a graph input or one result of a node.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Value(u32);
entity_impl!(Value, "v");

/// An operation node.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Node(u32);
entity_impl!(Node, "n");

/// A constant tensor in the graph's constant pool (weights, folded shapes...).
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Const(u32);
entity_impl!(Const, "c");
