from services.insights.service import definition
from shared.stage import run_stage

if __name__ == "__main__":
    run_stage(definition())
