from services.qualification.service import definition
from shared.runtime import run_stage

if __name__ == "__main__":
    run_stage(definition())
