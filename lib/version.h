// The maye-c version, reported by every program and written into stream headers.
#pragma once
#define MAYE_VERSION "0.1.0"
