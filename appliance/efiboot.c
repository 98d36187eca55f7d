/*
 * appliance/efiboot.c: the appliance's UEFI boot loader (built by appliance/build with Debian's
 * gnu-efi; the kernel, the initramfs and the command line are PE sections .linux, .initrd and
 * .cmdline appended to it, as in a unified kernel image).
 *
 * Why not the kernel's own EFI stub (systemd-stub, GRUB and the kernel as BOOTX64.EFI all end up
 * there): the x86 EFI stub decompresses the kernel before ExitBootServices(), into one block of
 * free memory of the kernel's whole size (Debian 6.12: init_size 55.9 MB, 2 MB aligned, above
 * 16 MB). Under OVMF with 128 MB, no free block is that large: OVMF keeps its decompressed DXE
 * firmware volume at 9-21 MB and its PEI stack (128 KB) at RAM size - 68.5 MB until
 * ExitBootServices(), so the largest free block is 21-59.5 MB (38.5 MB).
 *
 * This loader uses the 64-bit boot protocol instead (Documentation/arch/x86/boot.rst): it
 * copies the initramfs and the command line to memory outside the kernel's window, builds the
 * zero page (setup header, E820 map from the UEFI memory map, ACPI RSDP, GOP framebuffer),
 * calls ExitBootServices(), copies the protected-mode kernel to its preferred address (16 MB;
 * else the next aligned address whose init_size window is free once boot services are gone) and
 * jumps to its 64-bit entry. The kernel's own decompressor then runs with all the memory
 * the firmware used for boot services free. The kernel runs without UEFI runtime services
 * (as under a BIOS), which the appliance does not use.
 */
#include <efi.h>
#include <efilib.h>

#define E820_MAX 128

struct section {
	UINT8 *data;
	UINTN size;
};

static EFI_GUID acpi20_guid = { 0x8868e871, 0xe4f1, 0x11d3, { 0xbc, 0x22, 0x00, 0x80, 0xc7, 0x3c, 0x88, 0x81 } };
static EFI_GUID acpi10_guid = { 0xeb9d2d30, 0x2d88, 0x11d3, { 0x9a, 0x16, 0x00, 0x90, 0x27, 0x3f, 0xc1, 0x4d } };
static EFI_GUID gop_guid = EFI_GRAPHICS_OUTPUT_PROTOCOL_GUID;
static EFI_GUID loaded_image_guid = EFI_LOADED_IMAGE_PROTOCOL_GUID;

#define U16(p) (*(UINT16 *)(p))
#define U32(p) (*(UINT32 *)(p))
#define U64(p) (*(UINT64 *)(p))

static EFI_STATUS fail(CHAR16 *what, EFI_STATUS st)
{
	Print(L"vxspan efiboot: %s: %r\n", what, st);
	uefi_call_wrapper(BS->Stall, 1, 10 * 1000 * 1000);
	return st;
}

/* A section of our own PE image, by name. */
static BOOLEAN find_section(UINT8 *base, const char *name, struct section *out)
{
	UINT32 pe = U32(base + 0x3c);
	UINT16 nsec = U16(base + pe + 6), optsz = U16(base + pe + 20);
	UINT8 *s = base + pe + 24 + optsz;
	for (UINT16 i = 0; i < nsec; i++, s += 40) {
		int j;
		for (j = 0; j < 8 && name[j] && s[j] == (UINT8)name[j]; j++)
			;
		if (j < 8 && (name[j] || s[j]))
			continue;
		out->data = base + U32(s + 12);
		out->size = U32(s + 8) ? U32(s + 8) : U32(s + 16);
		return TRUE;
	}
	return FALSE;
}

static BOOLEAN overlaps(UINT64 a, UINT64 alen, UINT64 b, UINT64 blen)
{
	return a < b + blen && b < a + alen;
}

/* Pages for SIZE bytes, not overlapping [LO, HI): the highest free block below 4 GB, else the
 * highest below LO. */
static EFI_STATUS alloc_outside(UINTN size, UINT64 lo, UINT64 hi, UINT64 *out)
{
	UINTN pages = (size + 4095) / 4096;
	EFI_PHYSICAL_ADDRESS a = 0xffffffffULL;
	EFI_STATUS st = uefi_call_wrapper(BS->AllocatePages, 4, AllocateMaxAddress, EfiLoaderData, pages, &a);
	if (!EFI_ERROR(st) && !overlaps(a, pages * 4096, lo, hi - lo)) {
		*out = a;
		return EFI_SUCCESS;
	}
	if (!EFI_ERROR(st))
		uefi_call_wrapper(BS->FreePages, 2, a, pages);
	a = lo - 1;
	st = uefi_call_wrapper(BS->AllocatePages, 4, AllocateMaxAddress, EfiLoaderData, pages, &a);
	if (EFI_ERROR(st))
		return st;
	*out = a;
	return EFI_SUCCESS;
}

static void copy(void *dst, const void *src, UINTN n)
{
	UINT8 *d = dst;
	const UINT8 *s = src;
	if (d < s) {
		while (n--)
			*d++ = *s++;
	} else if (d > s) {
		while (n--)
			d[n] = s[n];
	}
}

static UINT32 e820_type(UINT32 t)
{
	switch (t) {
	case EfiLoaderCode:
	case EfiLoaderData:
	case EfiBootServicesCode:
	case EfiBootServicesData:
	case EfiConventionalMemory:
		return 1; /* RAM */
	case EfiACPIReclaimMemory:
		return 3;
	case EfiACPIMemoryNVS:
		return 4;
	case EfiUnusableMemory:
		return 5;
	case 14: /* EfiPersistentMemory */
		return 7;
	default:
		return 2; /* reserved */
	}
}

/* The zero page's E820 table from the UEFI memory map (adjacent entries of one type merged). */
static void fill_e820(UINT8 *bp, EFI_MEMORY_DESCRIPTOR *map, UINTN map_size, UINTN desc_size)
{
	UINT8 *e820 = bp + 0x2d0;
	UINTN n = 0;
	for (UINTN off = 0; off + desc_size <= map_size; off += desc_size) {
		EFI_MEMORY_DESCRIPTOR *d = (EFI_MEMORY_DESCRIPTOR *)((UINT8 *)map + off);
		UINT64 addr = d->PhysicalStart, size = d->NumberOfPages * 4096;
		UINT32 type = e820_type(d->Type);
		if (n > 0) {
			UINT8 *p = e820 + (n - 1) * 20;
			if (U32(p + 16) == type && U64(p) + U64(p + 8) == addr) {
				U64(p + 8) += size;
				continue;
			}
		}
		if (n == E820_MAX)
			break;
		U64(e820 + n * 20) = addr;
		U64(e820 + n * 20 + 8) = size;
		U32(e820 + n * 20 + 16) = type;
		n++;
	}
	bp[0x1e8] = (UINT8)n;
}

/* screen_info (VIDEO_TYPE_EFI) from the GOP framebuffer, for efifb / simplefb on tty0. */
static void fill_screen_info(UINT8 *bp)
{
	EFI_GRAPHICS_OUTPUT_PROTOCOL *gop = NULL;
	if (EFI_ERROR(uefi_call_wrapper(BS->LocateProtocol, 3, &gop_guid, NULL, (void **)&gop)) || !gop || !gop->Mode ||
	    !gop->Mode->Info)
		return;
	EFI_GRAPHICS_OUTPUT_MODE_INFORMATION *info = gop->Mode->Info;
	UINT8 r, g, b;
	if (info->PixelFormat == PixelRedGreenBlueReserved8BitPerColor) {
		r = 0, g = 8, b = 16;
	} else if (info->PixelFormat == PixelBlueGreenRedReserved8BitPerColor) {
		r = 16, g = 8, b = 0;
	} else {
		return;
	}
	UINT8 *si = bp;
	UINT64 base = gop->Mode->FrameBufferBase;
	si[0x0f] = 0x70; /* orig_video_isVGA = VIDEO_TYPE_EFI */
	U16(si + 0x12) = (UINT16)info->HorizontalResolution;
	U16(si + 0x14) = (UINT16)info->VerticalResolution;
	U16(si + 0x16) = 32;
	U32(si + 0x18) = (UINT32)base;
	U16(si + 0x24) = (UINT16)(info->PixelsPerScanLine * 4);
	U32(si + 0x1c) = (UINT32)(info->PixelsPerScanLine * 4 * info->VerticalResolution);
	si[0x26] = 8, si[0x27] = r, si[0x28] = 8, si[0x29] = g;
	si[0x2a] = 8, si[0x2b] = b, si[0x2c] = 8, si[0x2d] = 24;
	U32(si + 0x36) = 1 << 0; /* VIDEO_CAPABILITY_SKIP_QUIRKS */
	if (base >> 32) {
		U32(si + 0x36) |= 1 << 1; /* VIDEO_CAPABILITY_64BIT_BASE */
		U32(si + 0x3a) = (UINT32)(base >> 32);
	}
}

static BOOLEAN ram_after_ebs(UINT32 t)
{
	return t == EfiLoaderCode || t == EfiLoaderData || t == EfiBootServicesCode || t == EfiBootServicesData ||
	       t == EfiConventionalMemory;
}

/* TRUE if a page-table page of the tree at TABLE (LEVEL 5..1) lies in [LO, HI). Identity mapped. */
static BOOLEAN tables_in(UINT64 table, int level, UINT64 lo, UINT64 hi)
{
	if (overlaps(table, 4096, lo, hi - lo))
		return TRUE;
	if (level == 1)
		return FALSE;
	UINT64 *e = (UINT64 *)(UINTN)table;
	for (int i = 0; i < 512; i++) {
		if (!(e[i] & 1))
			continue;
		if ((level == 3 || level == 2) && (e[i] & (1 << 7)))
			continue; /* 1 GB or 2 MB page */
		if (tables_in(e[i] & 0x000ffffffffff000ULL, level - 1, lo, hi))
			return TRUE;
	}
	return FALSE;
}

/* TRUE if [LO, HI) is covered by memory the kernel may use once boot services are gone. */
static BOOLEAN window_is_ram(EFI_MEMORY_DESCRIPTOR *map, UINTN map_size, UINTN desc_size, UINT64 lo, UINT64 hi)
{
	UINT64 pos = lo;
	while (pos < hi) {
		UINT64 next = pos;
		for (UINTN off = 0; off + desc_size <= map_size; off += desc_size) {
			EFI_MEMORY_DESCRIPTOR *d = (EFI_MEMORY_DESCRIPTOR *)((UINT8 *)map + off);
			UINT64 end = d->PhysicalStart + d->NumberOfPages * 4096;
			if (ram_after_ebs(d->Type) && d->PhysicalStart <= pos && end > pos) {
				next = end;
				break;
			}
		}
		if (next == pos)
			return FALSE;
		pos = next;
	}
	return TRUE;
}

static UINT64 pick_load(UINT64 pref, UINT64 init_size, UINT64 pm_size, UINT64 align, UINT64 img, UINT64 img_size,
			UINT64 stack)
{
	UINTN map_size = 0, key, desc_size;
	UINT32 desc_ver;
	EFI_MEMORY_DESCRIPTOR *map = NULL;
	UINT64 cr3, cr4, found = 0;
	__asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
	__asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
	int levels = (cr4 & (1 << 12)) ? 5 : 4; /* CR4.LA57 */

	uefi_call_wrapper(BS->GetMemoryMap, 5, &map_size, map, &key, &desc_size, &desc_ver);
	map_size += 16 * desc_size;
	if (EFI_ERROR(uefi_call_wrapper(BS->AllocatePool, 3, EfiLoaderData, map_size, (void **)&map)))
		return 0;
	if (EFI_ERROR(uefi_call_wrapper(BS->GetMemoryMap, 5, &map_size, map, &key, &desc_size, &desc_ver)))
		goto out;
	pref = (pref + align - 1) & ~(align - 1);
	for (UINT64 a = pref; a + init_size <= 0x100000000ULL; a += align) {
		if (overlaps(img, img_size, a, pm_size) || overlaps(stack - 65536, 65536 + 4096, a, pm_size))
			continue;
		if (!window_is_ram(map, map_size, desc_size, a, a + init_size))
			continue;
		if (tables_in(cr3 & 0x000ffffffffff000ULL, levels, a, a + init_size))
			continue;
		found = a;
		break;
	}
out:
	uefi_call_wrapper(BS->FreePool, 1, map);
	return found;
}

static UINT64 find_rsdp(void)
{
	UINT64 v1 = 0;
	for (UINTN i = 0; i < ST->NumberOfTableEntries; i++) {
		EFI_CONFIGURATION_TABLE *t = &ST->ConfigurationTable[i];
		if (!CompareGuid(&t->VendorGuid, &acpi20_guid))
			return (UINT64)(UINTN)t->VendorTable;
		if (!CompareGuid(&t->VendorGuid, &acpi10_guid))
			v1 = (UINT64)(UINTN)t->VendorTable;
	}
	return v1;
}

EFI_STATUS efi_main(EFI_HANDLE image, EFI_SYSTEM_TABLE *systab)
{
	EFI_LOADED_IMAGE *li;
	struct section lin, initrd, cmdline;
	EFI_STATUS st;

	InitializeLib(image, systab);
	st = uefi_call_wrapper(BS->HandleProtocol, 3, image, &loaded_image_guid, (void **)&li);
	if (EFI_ERROR(st))
		return fail(L"no loaded image protocol", st);
	UINT8 *base = li->ImageBase;
	if (!find_section(base, ".linux", &lin) || !find_section(base, ".initrd", &initrd) ||
	    !find_section(base, ".cmdline", &cmdline))
		return fail(L"missing .linux, .initrd or .cmdline section", EFI_LOAD_ERROR);

	/* The bzImage's setup header: 64-bit entry (boot protocol 2.12+, XLF_KERNEL_64). */
	UINT8 *k = lin.data;
	if (lin.size < 0x1000 || U32(k + 0x202) != 0x53726448 || U16(k + 0x206) < 0x20c || !(U16(k + 0x236) & 1))
		return fail(L"not a 64-bit bzImage (boot protocol 2.12+)", EFI_UNSUPPORTED);
	UINTN setup_sects = k[0x1f1] ? k[0x1f1] : 4;
	UINTN pm_off = (setup_sects + 1) * 512, pm_size = lin.size - pm_off;
	UINT64 load = U64(k + 0x258), init_size = U32(k + 0x260), kalign = U32(k + 0x230);

	/* Where the kernel goes: the preferred address (16 MB), else the next aligned one whose
	 * window is RAM once boot services are gone and holds neither this loader (image, stack)
	 * nor the firmware's page tables (in use until the kernel's decompressor has its own). */
	UINT64 here = (UINT64)(UINTN)&st;
	if (!kalign)
		kalign = 2 << 20;
	load = pick_load(load, init_size, pm_size, kalign, (UINT64)(UINTN)base, li->ImageSize, here);
	if (!load || (!k[0x234] && load != U64(k + 0x258))) /* relocatable_kernel */
		return fail(L"no room for the kernel", EFI_OUT_OF_RESOURCES);

	UINT64 bp_addr, cl_addr, rd_addr;
	if (EFI_ERROR((st = alloc_outside(4096, load, load + init_size, &bp_addr))) ||
	    EFI_ERROR((st = alloc_outside(cmdline.size + 1, load, load + init_size, &cl_addr))) ||
	    EFI_ERROR((st = alloc_outside(initrd.size, load, load + init_size, &rd_addr))))
		return fail(L"no memory for the zero page, command line or initramfs", st);
	UINT8 *bp = (UINT8 *)(UINTN)bp_addr;
	SetMem(bp, 4096, 0);
	/* The setup header, as in the image (0x1f1 up to 0x202 + the byte at 0x201). */
	copy(bp + 0x1f1, k + 0x1f1, 0x202 + k[0x201] - 0x1f1);
	bp[0x210] = 0xff; /* type_of_loader: undefined */
	char *cl = (char *)(UINTN)cl_addr;
	copy(cl, cmdline.data, cmdline.size);
	cl[cmdline.size] = 0;
	U32(bp + 0x228) = (UINT32)cl_addr;
	U32(bp + 0x0c8) = (UINT32)(cl_addr >> 32);
	copy((void *)(UINTN)rd_addr, initrd.data, initrd.size);
	U32(bp + 0x218) = (UINT32)rd_addr;
	U32(bp + 0x21c) = (UINT32)initrd.size;
	U32(bp + 0x0c0) = (UINT32)(rd_addr >> 32);
	U32(bp + 0x0c4) = (UINT32)((UINT64)initrd.size >> 32);
	U64(bp + 0x070) = find_rsdp();
	fill_screen_info(bp);
	Print(L"vxspan efiboot: kernel at 0x%lx (window %d MB), initramfs at 0x%lx (%d KB)\n", load,
	      (int)(init_size >> 20), rd_addr, (int)(initrd.size >> 10));

	/* The memory map, then ExitBootServices() (retried if the map changed in between). */
	UINTN map_size = 0, key, desc_size, alloc_size;
	UINT32 desc_ver;
	EFI_MEMORY_DESCRIPTOR *map = NULL;
	uefi_call_wrapper(BS->GetMemoryMap, 5, &map_size, map, &key, &desc_size, &desc_ver);
	alloc_size = map_size + 64 * desc_size;
	st = uefi_call_wrapper(BS->AllocatePool, 3, EfiLoaderData, alloc_size, (void **)&map);
	if (EFI_ERROR(st))
		return fail(L"no memory for the memory map", st);
	for (int tries = 0;; tries++) {
		map_size = alloc_size;
		st = uefi_call_wrapper(BS->GetMemoryMap, 5, &map_size, map, &key, &desc_size, &desc_ver);
		if (EFI_ERROR(st))
			return fail(L"GetMemoryMap", st);
		fill_e820(bp, map, map_size, desc_size);
		st = uefi_call_wrapper(BS->ExitBootServices, 2, image, key);
		if (!EFI_ERROR(st))
			break;
		if (tries == 3)
			return fail(L"ExitBootServices", st);
	}

	/* No firmware from here on. The protected-mode kernel to its address, then its 64-bit
	 * entry (startup_64, 0x200 in) with %rsi = the zero page. */
	__asm__ volatile("cli");
	copy((void *)(UINTN)load, k + pm_off, pm_size);
	__asm__ volatile("jmp *%0" : : "r"(load + 0x200), "S"(bp) : "memory");
	for (;;)
		__asm__ volatile("hlt");
}
