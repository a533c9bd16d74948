module Sesame.Tests.Generators

// Filled in by the core tests.
