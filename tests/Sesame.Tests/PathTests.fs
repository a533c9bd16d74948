module Sesame.Tests.PathTests

// Filled in by the core tests.
