"""Unit tests of credential rotation: pure logic and strategies over in-memory fakes of the ports."""
