fn main() -> std::process::ExitCode {
    lenscap::cli::run()
}
