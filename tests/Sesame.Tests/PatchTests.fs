module Sesame.Tests.PatchTests

// Filled in by the core tests.
