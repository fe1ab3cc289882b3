// Emulation stand-in for <cuda_pipeline_primitives.h>: see ../cuda_emulation.h.
#pragma once
#include "../cuda_emulation.h"
