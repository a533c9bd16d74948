module Sesame.Tests.JsonTests

// Filled in by the core tests.
