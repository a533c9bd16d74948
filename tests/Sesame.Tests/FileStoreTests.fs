module Sesame.Tests.FileStoreTests

// Filled in by the file-store work (issue 4).
