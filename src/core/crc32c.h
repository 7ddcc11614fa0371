/* CRC32C (Castagnoli, the polynomial of iSCSI, ext4 and SSE4.2's crc32 instruction): the checksum
 * behind every WAL record and engine snapshot section, so it sits in core, below both. Hardware
 * instruction where the CPU has it, slicing-by-8 tables otherwise; both give the same values. */
#ifndef CORE_CRC32C_H
#define CORE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extends crc (0 to start) over buf[0..len): crc32c(crc32c(0, a), b) == crc32c(0, a ‖ b).
 * crc32c(0, "123456789", 9) == 0xE3069283. */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

/* The table-driven implementation alone (tests compare it with the hardware one). */
uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len);

/* 1 when crc32c() uses the CPU's crc32 instruction. */
int crc32c_hw_available(void);

#endif
