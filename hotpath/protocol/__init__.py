"""Sans-I/O protocol code: takes bytes or values, returns values or bytes."""
