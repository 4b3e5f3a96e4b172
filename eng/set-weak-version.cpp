// set-weak-version <elf-file> <version-name>
// Sets VER_FLG_WEAK on every .gnu.version_r entry named <version-name> in a 64-bit little-endian ELF
// shared library, so the dynamic loader tolerates a system library that lacks that version.
#include <elf.h>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

int main(int argc, char** argv) {
    if (argc != 3) { std::fprintf(stderr, "usage: set-weak-version <elf-file> <version-name>\n"); return 2; }
    std::ifstream in(argv[1], std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (bytes.size() < sizeof(Elf64_Ehdr) || std::memcmp(bytes.data(), ELFMAG, SELFMAG) != 0 || bytes[EI_CLASS] != ELFCLASS64) {
        std::fprintf(stderr, "%s: not a 64-bit ELF file\n", argv[1]); return 1;
    }
    auto* eh = reinterpret_cast<Elf64_Ehdr*>(bytes.data());
    auto* sh = reinterpret_cast<Elf64_Shdr*>(bytes.data() + eh->e_shoff);
    int changed = 0, found = 0;
    for (int i = 0; i < eh->e_shnum; ++i) {
        if (sh[i].sh_type != SHT_GNU_verneed) continue;
        const char* strtab = bytes.data() + sh[sh[i].sh_link].sh_offset;
        size_t pos = sh[i].sh_offset;
        for (;;) {
            auto* vn = reinterpret_cast<Elf64_Verneed*>(bytes.data() + pos);
            size_t apos = pos + vn->vn_aux;
            for (int k = 0; k < vn->vn_cnt; ++k) {
                auto* aux = reinterpret_cast<Elf64_Vernaux*>(bytes.data() + apos);
                if (std::strcmp(strtab + aux->vna_name, argv[2]) == 0) {
                    ++found;
                    if (!(aux->vna_flags & VER_FLG_WEAK)) { aux->vna_flags |= VER_FLG_WEAK; ++changed; }
                }
                if (aux->vna_next == 0) break;
                apos += aux->vna_next;
            }
            if (vn->vn_next == 0) break;
            pos += vn->vn_next;
        }
    }
    if (found == 0) { std::fprintf(stderr, "%s: no version need named %s\n", argv[1], argv[2]); return 0; }
    if (changed) {
        std::ofstream out(argv[1], std::ios::binary | std::ios::trunc);
        out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        if (!out) { std::fprintf(stderr, "%s: write failed\n", argv[1]); return 1; }
    }
    return 0;
}
